"""GHL's per-location limit (100 requests in any 10 s, modelled as a sliding log by the fake):
status updates, contact look-ups and replies of one location share it without a 429."""

import asyncio

import pytest

from app.devkit.harness import LOCATION, Harness, webhook
from tests.e2e.test_inbound import INBOUND_KEY, post_sms, sms

MESSAGES, REPLIES = 95, 5  # 95 status updates + 11 calls for the replies: more than 100


@pytest.mark.parametrize("backend", ["sqlite"])  # the store's part is in the unit tests
async def test_status_updates_and_replies_of_one_location_draw_no_429_from_ghl(
    harness: Harness,
):
    harness.ghl.location_limit = (100, 10.0)
    harness.env["GHL_REQUESTS_PER_10S"] = "100"
    harness.env["INBOUND_API_KEY"] = INBOUND_KEY
    harness.env["INBOUND_ROUTES"] = f'{{"CASTTEST": "{LOCATION}"}}'
    await harness.seed_installation()
    harness.start()

    for start in range(0, MESSAGES, 19):
        posts = [harness.post(webhook(f"m-ghl-{i}")) for i in range(start, start + 19)]
        assert all(r.status_code == 202 for r in await asyncio.gather(*posts))
    for n in range(REPLIES):
        assert (await post_sms(harness, sms(gateway_id=f"gw-{n}"))).status_code == 202

    await harness.wait_for(
        lambda: len(harness.ghl.statuses) >= MESSAGES and len(harness.ghl.inbound) >= REPLIES,
        timeout=40,
        what="every status update and reply in GHL",
    )
    assert harness.ghl.rate_limited == 0
    assert harness.ghl.max_calls_in_any_window(LOCATION) <= 100
