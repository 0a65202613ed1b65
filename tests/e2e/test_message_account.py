"""A message keeps the Cast account that first sent it, end to end (issue 28): a location that
changes or removes its key on the settings page while a message is being retried or polled
gets neither a second SMS on the other account nor its receipts asked of the wrong one."""

import pytest

from app.devkit.harness import Harness, webhook
from tests.e2e.test_settings_page import OWN_KEY, save, sign_in
from tests.support.cryptojs import SSO_KEY


@pytest.fixture
async def own_key(harness: Harness) -> tuple[Harness, str]:
    """A running bridge whose location sends with its own key; the settings page's session.
    The first receipt poll comes 2 s after Cast accepted, so a save can come before it."""
    harness.env.update(GHL_APP_SSO_KEY=SSO_KEY, DLR_FIRST_POLL_SECONDS="2")
    harness.cast.api_keys.add(OWN_KEY)
    await harness.seed_installation()
    harness.start()
    _, session = await sign_in(harness)
    saved = await save(harness, session, sender_id="MYBRAND", api_key=OWN_KEY, enabled="1")
    assert saved.status_code == 200
    return harness, session


async def test_a_retry_after_a_lost_answer_sends_no_second_sms_after_the_key_is_removed(
    own_key: tuple[Harness, str],
):
    bridge, session = own_key
    # Cast sends it but its answer is lost; the bridge retries 2 s later
    bridge.cast.fail_next(1, 503, after_sending=True, headers={"Retry-After": "2"})
    await bridge.post(webhook("m-kept-key"))
    await bridge.wait_for(lambda: bridge.cast.requests, what="the first send")
    await save(bridge, session, sender_id="MYBRAND", enabled="1", remove_api_key="1")

    await bridge.wait_for(lambda: bridge.statuses_for("m-kept-key"), what="status at GHL")

    (sms,) = bridge.cast.sent
    assert sms["key"] == OWN_KEY
    assert [r["key"] for r in bridge.cast.requests] == [OWN_KEY, OWN_KEY]
    assert bridge.statuses_for("m-kept-key") == [{"status": "delivered"}]


async def test_receipts_are_asked_of_the_account_that_sent_after_the_key_is_removed(
    own_key: tuple[Harness, str],
):
    bridge, session = own_key
    await bridge.post(webhook("m-kept-receipts"))
    await bridge.wait_for(lambda: bridge.cast.sent, what="the send")
    await save(bridge, session, sender_id="MYBRAND", enabled="1", remove_api_key="1")

    await bridge.wait_for(lambda: bridge.statuses_for("m-kept-receipts"), what="status at GHL")

    stored = await bridge.wait_for_message("m-kept-receipts", lambda m: m.delivery is not None)
    assert stored.delivery == "confirmed"
