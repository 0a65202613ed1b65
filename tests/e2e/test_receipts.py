"""Truthful delivery status: GHL hears `delivered` only when the carrier confirms it."""

import asyncio
import signal

import pytest

from app.devkit.harness import CAST_KEY, CIPHER, Harness, webhook
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings

FAST_POLLS = {"DLR_FIRST_POLL_SECONDS": "0.3", "DLR_MAX_POLL_INTERVAL_SECONDS": "0.5"}


@pytest.fixture
async def polling_bridge(harness: Harness) -> Harness:
    harness.env.update(FAST_POLLS)
    await harness.seed_installation()
    return harness


async def test_delivered_is_reported_only_after_the_carrier_confirms(polling_bridge: Harness):
    h = polling_bridge
    h.cast.next_dlr.append(
        [
            {"status": "sent"},
            {"status": "pending", "dlr_status": "ACCEPTD"},
            {"status": "delivered", "dlr_status": "DELIVRD"},
        ]
    )
    h.start()
    await h.post(webhook("m-dlr"))

    await h.wait_for(lambda: h.statuses_for("m-dlr"), what="status")
    assert h.statuses_for("m-dlr") == [{"status": "delivered"}]
    assert h.cast.status_requests.count(h.cast.sent[0]["message_id"]) == 3
    stored = await h.wait_for_message("m-dlr", lambda m: m.delivery is not None)
    assert stored.delivery == "confirmed"  # GHL may hear of it before the bridge writes it down


async def test_a_carrier_rejection_is_reported_failed_in_words(polling_bridge: Harness):
    h = polling_bridge
    h.cast.next_dlr.append([{"status": "sent"}, {"status": "undelivered", "dlr_status": "REJECTD"}])
    h.start()
    await h.post(webhook("m-rejected"))

    await h.wait_for(lambda: h.statuses_for("m-rejected"), what="status")
    (status,) = h.statuses_for("m-rejected")
    assert status["status"] == "failed"
    assert status["error"]["code"] == "REJECTD"
    assert (
        status["error"]["message"]
        == "Rejected by the carrier (REJECTD) — is the sender ID approved?"
    )


async def test_still_unknown_at_the_deadline_is_delivered_but_unconfirmed(polling_bridge: Harness):
    h = polling_bridge
    h.env["DLR_DEADLINE_SECONDS"] = "1.5"
    h.cast.next_dlr.append([{"status": "sent"}])
    h.start()
    await h.post(webhook("m-unknown"))

    await h.wait_for(lambda: h.statuses_for("m-unknown"), what="status")
    assert h.statuses_for("m-unknown") == [{"status": "delivered"}]
    stored = await h.wait_for_message("m-unknown", lambda m: m.delivery is not None)
    assert stored.delivery == "unconfirmed"  # GHL may hear of it before the bridge writes it down


async def test_status_endpoint_errors_mean_keep_polling(polling_bridge: Harness):
    h = polling_bridge
    h.cast.status_errors = 2
    h.start()
    await h.post(webhook("m-status-errors"))

    await h.wait_for(lambda: h.statuses_for("m-status-errors"), what="status")
    assert h.statuses_for("m-status-errors") == [{"status": "delivered"}]
    assert len(h.cast.status_requests) == 3


async def test_one_failed_part_fails_a_multi_part_message(polling_bridge: Harness):
    h = polling_bridge
    h.cast.next_dlr.extend(
        [[{"status": "delivered"}], [{"status": "undelivered", "dlr_status": "UNDELIV"}]]
    )
    h.start()
    await h.post(webhook("m-parts", message=" ".join(["word"] * 150)))  # 749 chars, 2 parts

    await h.wait_for(lambda: h.statuses_for("m-parts"), what="status")
    (status,) = h.statuses_for("m-parts")
    assert status["status"] == "failed" and status["error"]["code"] == "UNDELIV"


@pytest.mark.process  # SIGKILL
async def test_a_restart_between_send_and_receipt_loses_no_poll(polling_bridge: Harness):
    h = polling_bridge
    h.env.update({"DLR_FIRST_POLL_SECONDS": "3"})
    h.start()
    await h.post(webhook("m-restart"))
    await h.wait_for(lambda: h.cast.sent, what="send")
    h.stop(signal.SIGKILL)

    h.start()
    await h.wait_for(lambda: h.statuses_for("m-restart"), timeout=20, what="status after restart")
    assert h.statuses_for("m-restart") == [{"status": "delivered"}]
    assert len(h.cast.sent) == 1


async def test_accepted_mode_reports_delivered_when_cast_accepts_without_polling(harness: Harness):
    harness.env["DELIVERY_STATUS_MODE"] = "accepted"
    harness.cast.next_dlr.append([{"status": "undelivered", "dlr_status": "REJECTD"}])
    await harness.seed_installation()
    harness.start()
    await harness.post(webhook("m-accepted"))

    await harness.wait_for(lambda: harness.statuses_for("m-accepted"), what="status")
    await asyncio.sleep(0.3)
    assert harness.statuses_for("m-accepted") == [{"status": "delivered"}]
    assert harness.cast.status_requests == []


BULK_KEYS = [CAST_KEY] + [f"cast_{i:02d}" + "e" * 62 for i in range(1, 3)]
BULK_MESSAGES = 200


async def own_keys(h: Harness, keys: list[str]) -> list[str]:
    """One installed location per key, sending with it; their ids."""
    locations = [f"loc-key-{i}" for i in range(len(keys))]
    for location_id, key in zip(locations, keys, strict=True):
        h.cast.api_keys.add(key)
        await h.seed_installation(location_id)
        settings = LocationSettings(location_id=location_id, cast_api_key=key, updated_at=0)
        await h.with_store(
            lambda store, s=settings: LocationSettingsRepository(store, CIPHER).put(s)
        )
    return locations


# The store's part (the ledger, the round claim) runs on both backends in tests/test_reconcile.py;
# 200 messages through the MongoDB wire server take minutes on a busy 2-core machine.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_receipts_at_bulk_cost_at_most_1_2_cast_requests_per_message(harness: Harness):
    h = harness
    h.env.update(
        DLR_FIRST_POLL_SECONDS="2",
        DLR_MAX_POLL_INTERVAL_SECONDS="6",
        DLR_LOGS_INTERVAL_SECONDS="3",
    )
    h.cast.settle_after = (0.6, 4.0)  # Cast's 3-20 s, five times faster
    locations = await own_keys(h, BULK_KEYS)
    h.start()
    ids = [f"m-bulk-{i}" for i in range(BULK_MESSAGES)]
    for start in range(0, BULK_MESSAGES, 20):
        await asyncio.gather(
            *(
                h.post(webhook(message_id, locationId=locations[n % len(locations)]))
                for n, message_id in enumerate(ids[start : start + 20], start=start)
            )
        )

    await h.wait_for(lambda: len(h.ghl.statuses) >= BULK_MESSAGES, timeout=90, what="statuses")
    await asyncio.sleep(1.0)  # nothing more should come

    assert sorted(s["message_id"] for s in h.ghl.statuses) == sorted(ids)
    assert {s["body"]["status"] for s in h.ghl.statuses} == {"delivered"}
    requests = sum(h.cast.api_calls.values())
    assert requests <= 1.2 * BULK_MESSAGES, dict(h.cast.api_calls)
    assert h.cast.api_calls["logs"] > 0
