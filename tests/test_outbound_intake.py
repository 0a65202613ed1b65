"""How an accepted webhook reaches Cast: the webhook stores the message, due now, and wakes the
worker; the worker claims due messages and paces them, and sends whose key is backlogged go back
to the outbox until their turn (the webhook knows nothing of either)."""

import itertools
import time

import pytest

from app.cast.pacing import HORIZON, SECOND, CastPacer
from app.devkit.harness import LOCATION, webhook
from app.ghl.schemas import ProviderOutboundMessage
from app.metrics import Counters
from app.oauth.tokens import TokenService
from app.outbound.repository import OutboxRepository
from app.outbound.service import Accepted, OutboundService
from app.outbound.worker import OutboundWorker
from app.store import PENDING, Store
from tests.support.units import (
    FakeCast,
    FakeClock,
    FakeGHL,
    at_time,
    install,
    installations,
    outbound_worker,
    unit_settings,
)

QUEUE = "outbound"
NOW = 1_700_000_000.0


async def no_sleep(seconds: float) -> None:
    """Slots are reserved, never waited for: the clock stands still."""


def intake(
    store: Store, clock: FakeClock | None = None
) -> tuple[OutboundService, OutboundWorker, FakeCast]:
    config = unit_settings()
    cast, ghl, outbox = FakeCast(), FakeGHL(), OutboxRepository(store)
    tokens = TokenService(config, store, installations(store), ghl, Counters())
    if clock is None:
        pacer = CastPacer(store, per_key_rate=1e6, ip_rate=1e6)
        worker = outbound_worker(config, store, cast, ghl, tokens, pacer)
    else:
        pacer = CastPacer(store, per_key_rate=10, ip_rate=1000, clock=clock, sleep=no_sleep)
        worker = outbound_worker(config, store, cast, ghl, tokens, pacer, clock=clock)
    return OutboundService(config, outbox, Counters(), worker), worker, cast


@pytest.fixture(autouse=True)
async def installed(sqlite_store: Store) -> None:
    """The webhooks' location has the app installed (without one, nothing is sent)."""
    await install(installations(sqlite_store), time.time(), location_id=LOCATION)


def payload(message_id: str) -> ProviderOutboundMessage:
    return ProviderOutboundMessage.model_validate(webhook(message_id))


async def test_an_accepted_message_waits_in_the_outbox_due_now_and_wakes_the_worker(
    sqlite_store: Store,
) -> None:
    service, worker, cast = intake(sqlite_store)
    assert await service.accept(payload("m1")) is Accepted.QUEUED
    stored = await sqlite_store.get_item(QUEUE, "m1")
    assert stored is not None and stored.state == PENDING and stored.lease is None
    assert stored.due_at <= time.time()
    assert worker._wakeup.is_set()
    assert not worker._inflight and not cast.calls  # the worker claims it, not the webhook


async def test_a_duplicate_webhook_is_answered_duplicate_and_stored_once(
    sqlite_store: Store,
) -> None:
    service, _, _ = intake(sqlite_store)
    await service.accept(payload("m1"))
    before = await sqlite_store.get_item(QUEUE, "m1")
    assert await service.accept(payload("m1")) is Accepted.DUPLICATE
    assert await sqlite_store.get_item(QUEUE, "m1") == before


async def test_sends_beyond_their_keys_horizon_go_back_to_the_outbox_one_spacing_apart(
    sqlite_store: Store,
) -> None:
    clock = FakeClock(NOW)
    service, worker, cast = intake(sqlite_store, clock)
    for i in range(25):
        await service.accept(payload(f"m{i}"))
    for item in await sqlite_store.claim(QUEUE, now=time.time(), lease_seconds=15, limit=25):
        await worker._process(item)
    within = int(HORIZON * 10 / SECOND) + 1  # slots NOW .. NOW + HORIZON, SECOND / 10 apart
    assert len(cast.calls["send_sms"]) == within
    items = [await sqlite_store.get_item(QUEUE, f"m{i}") for i in range(25)]
    unsent = [item for item in items if item and not item.data["parts"][0]["cast_message_id"]]
    assert all(item.data["deferrals"] == 1 for item in unsent)
    back = sorted(item.due_at for item in unsent)
    first_free = NOW + within * SECOND / 10
    assert back[0] == at_time(first_free - HORIZON / 2)
    assert [b - a for a, b in itertools.pairwise(back)] == pytest.approx([SECOND / 10] * 4)
