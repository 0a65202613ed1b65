"""Hostile input on the running bridge: what once wedged a message now ends within a deadline."""

import time

from app.devkit.harness import CIPHER, LOCATION, Harness, webhook
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings


async def test_a_stored_key_httpx_cannot_send_fails_the_message_at_the_send_deadline(
    harness: Harness,
):
    # Saved before keys were checked for their shape: every send raises inside httpx.
    wedged = LocationSettings(location_id=LOCATION, cast_api_key="cast_éééééééé", updated_at=0)
    await harness.with_store(lambda s: LocationSettingsRepository(s, CIPHER).put(wedged))
    harness.env["SEND_DEADLINE_SECONDS"] = "2"
    await harness.seed_installation()
    harness.start()
    started = time.monotonic()

    await harness.post(webhook("m-wedged"))

    await harness.wait_for(lambda: harness.statuses_for("m-wedged"), timeout=20, what="status")
    (status,) = harness.statuses_for("m-wedged")
    assert status["status"] == "failed" and status["error"]["code"] == "INTERNAL_ERROR"
    assert "Gave up" in status["error"]["message"] and time.monotonic() - started < 15
    assert harness.cast.requests == []
