"""How an accepted webhook reaches the worker: handed straight to this process's worker, already
leased to it (no claim round trip), unless the worker is full (then it waits in the outbox, due
now) or its key's sends are backlogged here (then it is held until its turn)."""

import asyncio
import time

import pytest

from app.cast.pacing import BACKLOG_SECONDS, RETURN_AHEAD_SECONDS, CastPacer
from app.devkit.harness import CAST_KEY, LOCATION, webhook
from app.ghl.schemas import ProviderOutboundMessage
from app.metrics import Counters
from app.oauth.tokens import TokenService
from app.outbound.repository import OutboxRepository
from app.outbound.service import Accepted, OutboundService
from app.outbound.worker import OutboundWorker
from app.store import PENDING, Store
from tests.support.units import (
    FakeCast,
    FakeGHL,
    install,
    installations,
    outbound_worker,
    unit_settings,
)

QUEUE = "outbound"


def intake(
    store: Store, pacer: CastPacer, **settings: object
) -> tuple[OutboundService, OutboundWorker, FakeCast]:
    config = unit_settings(**settings)
    cast, ghl, outbox = FakeCast(), FakeGHL(), OutboxRepository(store)
    tokens = TokenService(config, store, installations(store), ghl)
    worker = outbound_worker(config, store, cast, ghl, tokens, pacer)
    return OutboundService(config, outbox, Counters(), worker), worker, cast


@pytest.fixture(autouse=True)
async def installed(sqlite_store: Store) -> None:
    """The webhooks' location has the app installed (without one, nothing is sent)."""
    await install(installations(sqlite_store), time.time(), location_id=LOCATION)


def unpaced(store: Store) -> CastPacer:
    return CastPacer(store, per_key_rate=1e6, ip_rate=1e6)


def payload(message_id: str) -> ProviderOutboundMessage:
    return ProviderOutboundMessage.model_validate(webhook(message_id))


async def test_an_accepted_message_is_handed_to_the_local_worker_already_leased(
    sqlite_store: Store,
) -> None:
    service, worker, cast = intake(sqlite_store, unpaced(sqlite_store))
    assert await service.accept(payload("m1")) is Accepted.QUEUED
    (task,) = worker._inflight
    stored = await sqlite_store.get_item(QUEUE, "m1")
    assert stored is not None and stored.lease is not None  # no other worker can claim it
    await task
    assert [key for _, _, key, _ in cast.calls["send_sms"]] == ["ghl:m1:1/1"]


async def test_a_message_accepted_while_the_worker_is_full_waits_in_the_outbox_due_now(
    sqlite_store: Store,
) -> None:
    service, worker, _ = intake(sqlite_store, unpaced(sqlite_store), worker_concurrency=1)
    assert worker.reserve()  # the only place is taken
    assert await service.accept(payload("m1")) is Accepted.QUEUED
    claimed = await sqlite_store.claim(QUEUE, now=time.time(), lease_seconds=15, limit=10)
    assert [item.id for item in claimed] == ["m1"]


async def test_a_message_accepted_while_its_keys_sends_are_backlogged_is_held_until_its_turn(
    sqlite_store: Store,
) -> None:
    pacer = CastPacer(sqlite_store, per_key_rate=10, ip_rate=1000)
    waiting = [asyncio.create_task(pacer.before_send(CAST_KEY)) for _ in range(25)]
    await asyncio.sleep(0.05)
    service, worker, cast = intake(sqlite_store, pacer)
    try:
        now = time.time()
        assert await service.accept(payload("m1")) is Accepted.QUEUED
        assert not worker._inflight and not cast.calls
        assert await sqlite_store.claim(QUEUE, now=now + 0.5, lease_seconds=15, limit=10) == []
        stored = await sqlite_store.get_item(QUEUE, "m1")
        assert stored is not None and stored.state == PENDING
        assert stored.due_at >= now + BACKLOG_SECONDS - RETURN_AHEAD_SECONDS
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_a_burst_of_webhooks_hands_the_worker_only_its_keys_backlog_and_holds_the_rest(
    sqlite_store: Store,
) -> None:
    pacer = CastPacer(sqlite_store, per_key_rate=10, ip_rate=1000)
    service, worker, _ = intake(sqlite_store, pacer, worker_concurrency=100)
    now = time.time()
    outcomes = await asyncio.gather(*(service.accept(payload(f"m{i}")) for i in range(40)))
    try:
        assert set(outcomes) == {Accepted.QUEUED}
        assert len(worker._inflight) == BACKLOG_SECONDS * 10  # no more than it can send in 2 s
        items = [await sqlite_store.get_item(QUEUE, f"m{i}") for i in range(40)]
        lease_ends = now + unit_settings().lease_seconds - 1  # the handed ones' leases end later
        turns = sorted(item.due_at for item in items if item and item.due_at < lease_ends)
        assert len(turns) == 40 - BACKLOG_SECONDS * 10  # the rest are held until their turns
        assert turns[0] >= now + BACKLOG_SECONDS - RETURN_AHEAD_SECONDS
    finally:
        for task in worker._inflight:
            task.cancel()
        await asyncio.gather(*worker._inflight, return_exceptions=True)


@pytest.mark.parametrize("first", ["held", "queued"])
async def test_a_duplicate_webhook_is_answered_duplicate_and_not_handed_over(
    sqlite_store: Store, first: str
) -> None:
    service, worker, _ = intake(sqlite_store, unpaced(sqlite_store), worker_concurrency=2)
    if first == "queued":
        assert worker.reserve() and worker.reserve()  # both wait in the outbox
    await service.accept(payload("m1"))
    handed = set(worker._inflight)
    assert await service.accept(payload("m1")) is Accepted.DUPLICATE
    assert worker._inflight == handed
    await asyncio.gather(*handed)
