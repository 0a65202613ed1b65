"""Opt-outs end to end, on both stores: STOP and START from the recipient (also while a message
waits for its pacing slot), Cast's unsubscribe list, Cast refusing a send, and several replicas
sharing the sync."""

import json
import re
from pathlib import Path

import httpx

from app.devkit.harness import CAST_KEY, LOCATION, Harness, webhook
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from tests.e2e.test_inbound import INBOUND_KEY, SENDER, SENDER_E164, post_sms, sms, wait_record


async def started(h: Harness, **env: str) -> Harness:
    """Installed location, replies from CASTTEST routed to it, a running bridge."""
    h.env.update(
        {"INBOUND_API_KEY": INBOUND_KEY, "INBOUND_ROUTES": json.dumps({"CASTTEST": LOCATION})}
    )
    h.env.update(env)
    await h.seed_installation()
    h.start()
    return h


async def failed_with(h: Harness, message_id: str) -> dict:
    await h.wait_for(lambda: h.statuses_for(message_id), what=f"status of {message_id}")
    (status,) = h.statuses_for(message_id)
    return status


async def listed(h: Harness) -> OptOut | None:
    return await h.with_store(lambda store: OptOutList(store).get(LOCATION, SENDER_E164))


async def test_stop_sets_sms_dnd_and_the_next_message_fails_without_reaching_cast(
    harness: Harness,
):
    h = await started(harness)

    assert (await post_sms(h, sms("gw-stop", message=" Stop! "))).status_code == 202
    await wait_record(h, "gw:gw-stop", "delivered")
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", what="SMS DND")
    await h.post(webhook("m-after-stop", phone=SENDER))

    status = await failed_with(h, "m-after-stop")
    assert status["status"] == "failed" and status["error"]["code"] == "OPTED_OUT"
    reason = r"The recipient opted out \(replied STOP on \d{1,2} [A-Z][a-z]{2} 20\d\d\)"
    assert re.fullmatch(reason, status["error"]["message"]), status
    assert h.cast.sent == []
    assert [a["body"]["message"] for a in h.ghl.inbound] == [" Stop! "]  # still in the thread
    contact = h.ghl.contact(LOCATION, SENDER_E164)
    assert contact is not None and "Replied STOP" in contact["dndSettings"]["SMS"]["message"]
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    assert 'bridge_optouts_total{event="opt_out",source="keyword"} 1.0' in metrics
    assert 'bridge_sends_refused_optout_total{source="keyword"} 1.0' in metrics
    assert 'bridge_ghl_dnd_updates_total{outcome="set"} 1.0' in metrics


async def test_a_repeated_stop_sets_dnd_once(harness: Harness):
    h = await started(harness)
    for _ in range(3):  # the gateway retries the same SMS
        await post_sms(h, sms("gw-stop", message="STOP"))
    await wait_record(h, "gw:gw-stop", "delivered")
    await h.wait_for(lambda: h.ghl.contact_updates, what="the DND update")

    await post_sms(h, sms("gw-other", message="thanks"))
    await wait_record(h, "gw:gw-other", "delivered")
    assert len(h.ghl.contact_updates) == 1


async def test_start_clears_dnd_and_messages_are_sent_again(harness: Harness):
    h = await started(harness)
    await post_sms(h, sms("gw-stop", message="STOP"))
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", what="DND set")

    await post_sms(h, sms("gw-start", message="start."))
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "inactive", what="cleared")
    await h.post(webhook("m-after-start", phone=SENDER))

    await h.wait_for(lambda: h.cast.sent, what="the SMS at Cast")
    assert (await failed_with(h, "m-after-start"))["status"] == "delivered"
    assert await listed(h) is None


async def test_an_opt_out_at_cast_sets_dnd_within_one_sync_interval(harness: Harness):
    contact = harness.ghl.add_contact(LOCATION, SENDER_E164)
    h = await started(harness, CAST_OPTOUT_SYNC_SECONDS="1")

    h.cast.unsubscribe(CAST_KEY, SENDER_E164, "CASTTEST")

    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", timeout=3)
    assert "Cast's link for sender ID CASTTEST" in contact["dndSettings"]["SMS"]["message"]
    optout = await listed(h)
    assert optout is not None and optout.source == "cast"
    await h.post(webhook("m-after-cast", phone=SENDER))
    status = await failed_with(h, "m-after-cast")
    assert "through Cast's unsubscribe link" in status["error"]["message"]
    assert h.cast.sent == []


async def test_an_opt_out_at_cast_reaches_a_location_installed_on_the_key_later(
    harness: Harness,
):
    for location_id in (LOCATION, "loc-later"):
        harness.ghl.add_contact(location_id, SENDER_E164)
    h = await started(harness, CAST_OPTOUT_SYNC_SECONDS="0.3")
    h.cast.unsubscribe(CAST_KEY, SENDER_E164, "CASTTEST")
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", what="DND")

    await h.seed_installation("loc-later")  # a new sub-account on the default account

    await h.wait_for(
        lambda: h.ghl.sms_dnd("loc-later", SENDER_E164) == "active", what="the new one's DND"
    )
    await h.post(webhook("m-later", phone=SENDER, locationId="loc-later"))
    status = await failed_with(h, "m-later")
    assert status["error"]["code"] == "OPTED_OUT" and h.cast.sent == []


async def test_an_opt_out_for_another_sender_id_is_not_this_locations(harness: Harness):
    harness.ghl.add_contact(LOCATION, SENDER_E164)
    h = await started(harness, CAST_OPTOUT_SYNC_SECONDS="0.3")
    h.cast.unsubscribe(CAST_KEY, SENDER_E164, "OTHERBRAND")

    await h.wait_for(lambda: len(h.cast.unsubscribed_requests) >= 2, what="two syncs")
    assert h.ghl.sms_dnd(LOCATION, SENDER_E164) is None and await listed(h) is None


async def test_a_send_cast_refuses_as_unsubscribed_fails_and_lists_the_number(harness: Harness):
    contact = harness.ghl.add_contact(LOCATION, SENDER_E164)
    h = await started(harness, CAST_OPTOUT_SYNC_SECONDS="0")  # no sync saw the opt-out
    h.cast.unsubscribe(CAST_KEY, SENDER_E164, "CASTTEST")

    await h.post(webhook("m-refused", phone=SENDER, contactId=contact["id"]))

    status = await failed_with(h, "m-refused")
    assert status["error"]["code"] == "OPTED_OUT"
    assert "Cast's unsubscribe link" in status["error"]["message"]
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", what="DND set")
    optout = await listed(h)
    assert optout is not None and optout.source == "cast_refusal"
    requests = len(h.cast.requests)
    await h.post(webhook("m-next", phone=SENDER))
    await failed_with(h, "m-next")
    assert len(h.cast.requests) == requests  # the next one never reached Cast


async def test_a_stop_while_a_message_waits_for_its_slot_stops_its_remaining_parts(
    harness: Harness,
):
    h = await started(harness, CAST_RATE_PER_KEY="0.5")  # a part every 2 s
    three_parts = " ".join(["word"] * 250)  # 1,249 characters: three parts of at most 450

    await h.post(webhook("m-stop-midway", phone=SENDER, message=three_parts))
    await h.wait_for(lambda: h.cast.sent, what="the first part")
    assert (await post_sms(h, sms("gw-stop-midway", message="STOP"))).status_code == 202

    status = await failed_with(h, "m-stop-midway")
    assert status["status"] == "failed" and status["error"]["code"] == "OPTED_OUT"
    assert status["error"]["message"].endswith("(1 of 3 parts sent)")
    assert len(h.cast.sent) == 1


async def test_two_replicas_sync_once(harness: Harness, tmp_path: Path):
    harness.ghl.add_contact(LOCATION, SENDER_E164)
    first = await started(harness, CAST_OPTOUT_SYNC_SECONDS="0.3")
    second = Harness(first.cast, first.ghl, dict(first.env), tmp_path / "bridge-2.log")
    second.start()
    try:
        first.cast.unsubscribe(CAST_KEY, SENDER_E164, "CASTTEST")
        await first.wait_for(lambda: first.ghl.contact_updates, what="the DND update")
        await first.wait_for(lambda: len(first.cast.unsubscribed_requests) >= 5, what="syncs")
    finally:
        second.stop()
    assert len(first.ghl.contact_updates) == 1
    runs = [h.logs().count("Cast opt-out sync ran") for h in (first, second)]
    assert sorted(runs)[0] == 0 and sorted(runs)[1] >= 4, runs
