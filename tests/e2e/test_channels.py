"""Cast channels end to end (issue 21): a location whose sender ID is a SIM number sends through
Cast's SIM gateway, gets its receipt there and its customers' replies; an alphanumeric sender
stays on the SMS channel; a switch of sender applies to the next message."""

import time

import pytest

from app.devkit.harness import CAST_KEY, CIPHER, LOCATION, Harness, webhook
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from tests.e2e.test_admin import ADMIN_KEY, INBOUND_KEY, call, wait_message
from tests.e2e.test_inbound import post_sms, sms, wait_record

SIM_LOCATION = "loc-sim"
SIM = "+639170000001"


async def seed_sender(h: Harness, location_id: str, sender_id: str) -> None:
    settings = LocationSettings(
        location_id=location_id,
        sender_id=sender_id,
        assigned_senders=[sender_id],  # as `cast-ghl sender-id` assigns it
        updated_at=time.time(),
    )
    await h.with_store(lambda store: LocationSettingsRepository(store, CIPHER).put(settings))


@pytest.fixture
async def channels(harness: Harness) -> Harness:
    """Cast approved CASTTEST (sms) and a SIM number (sim) for the key; LOCATION sends as
    CASTTEST (the default), SIM_LOCATION as the SIM number; both installed."""
    harness.env.update(ADMIN_API_KEY=ADMIN_KEY, INBOUND_API_KEY=INBOUND_KEY)
    harness.cast.approve(CAST_KEY, "CASTTEST", "sms")
    harness.cast.approve(CAST_KEY, SIM, "sim")
    await harness.seed_installation(LOCATION)
    await harness.seed_installation(SIM_LOCATION)
    await seed_sender(harness, SIM_LOCATION, SIM)
    return harness


async def test_a_sim_sender_sends_through_the_gateway_and_gets_its_receipt_and_reply(
    channels: Harness,
):
    channels.start()
    await channels.post(webhook("m-sim", locationId=SIM_LOCATION))
    await channels.post(webhook("m-sms", locationId=LOCATION, phone="+639181234567"))

    sim = await wait_message(channels, "m-sim", "delivered")
    sms_view = await wait_message(channels, "m-sms", "delivered")

    assert [(s["channel"], s["sender_id"]) for s in channels.cast.sent_to("09171234567")] == [
        ("sim", SIM)
    ]
    assert (sim["channel"], sim["sender_id"], sim["delivery"]) == ("sim", SIM, "confirmed")
    assert (sms_view["channel"], sms_view["sender_id"]) == ("sms", "CASTTEST")
    assert channels.statuses_for("m-sim") == [{"status": "delivered"}]
    await post_sms(channels, sms("gw-sim-reply", sender="09171234567", to="09170000001"))
    reply = await wait_record(channels, "gw:gw-sim-reply", "delivered")
    assert (reply.location_id, reply.routed_by) == (SIM_LOCATION, "sender_id")


async def test_a_customer_texting_a_sim_number_first_reaches_the_location_sending_as_it(
    channels: Harness,
):
    channels.start()

    await post_sms(channels, sms("gw-cold", sender="09190000000", to="+639170000001"))

    record = await wait_record(channels, "gw:gw-cold", "delivered")
    assert (record.location_id, record.routed_by) == (SIM_LOCATION, "sender_id")


async def test_a_switch_of_sender_applies_to_the_next_message(channels: Harness):
    channels.start()
    await channels.post(webhook("m-before"))
    before = await wait_message(channels, "m-before", "delivered")

    refused = await call(
        channels, "PUT", f"/api/admin/locations/{LOCATION}/sender-id", {"sender_id": "NOPE"}
    )
    switched = await call(
        channels, "PUT", f"/api/admin/locations/{LOCATION}/sender-id", {"sender_id": "09170000001"}
    )
    await channels.post(webhook("m-after"))
    after = await wait_message(channels, "m-after", "delivered")

    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        f"NOPE is not approved for this Cast account; approved: CASTTEST (sms), {SIM} (sim)"
    )
    assert switched.status_code == 200
    assert (switched.json()["sender_id"], switched.json()["channel"]) == (SIM, "sim")
    assert (before["channel"], after["channel"]) == ("sms", "sim")
    assert [s["channel"] for s in channels.cast.sent] == ["sms", "sim"]


async def test_an_account_without_the_sim_channel_fails_the_message_with_a_clear_reason(
    harness: Harness,
):
    harness.env.update(ADMIN_API_KEY=ADMIN_KEY)
    harness.cast.approve(CAST_KEY, SIM, "sim", enable_channel=False)
    await harness.seed_installation(LOCATION)
    await seed_sender(harness, LOCATION, SIM)
    harness.start()

    await harness.post(webhook("m-no-sim"))
    failed = await wait_message(harness, "m-no-sim", "failed")

    reason = "This Cast account cannot send through the SIM gateway; ask Cast to enable it"
    assert failed["error_code"] == "CHANNEL_NOT_ALLOWED" and failed["error_message"] == reason
    await harness.wait_for(lambda: bool(harness.statuses_for("m-no-sim")), what="GHL status")
    assert harness.statuses_for("m-no-sim") == [
        {
            "status": "failed",
            "error": {"code": "CHANNEL_NOT_ALLOWED", "type": "saas", "message": reason},
        }
    ]
    assert [r["status"] for r in harness.cast.requests] == [403]  # not retried


async def test_receipts_are_polled_on_the_channel_the_message_went_through(channels: Harness):
    channels.cast.next_dlr.append(
        [{"status": "sent"}, {"status": "sent"}, {"status": "delivered", "dlr_status": "DELIVRD"}]
    )
    channels.start()
    await channels.post(webhook("m-in-flight", locationId=SIM_LOCATION))
    await channels.wait_for(lambda: channels.cast.sent, what="the send at Cast")

    switched = await call(
        channels, "PUT", f"/api/admin/locations/{SIM_LOCATION}/sender-id", {"sender_id": "CASTTEST"}
    )
    delivered = await wait_message(channels, "m-in-flight", "delivered")

    assert switched.status_code == 200 and switched.json()["channel"] == "sms"
    assert (delivered["channel"], delivered["delivery"]) == ("sim", "confirmed")
    assert delivered["polls"] >= 3  # every poll answered: /sim/status, not /sms/status (404)
