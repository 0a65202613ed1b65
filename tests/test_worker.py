"""The leased-queue runner: heartbeats keep live work, dead work comes back after the lease.

The lease runs on a fake clock (the worker's `clock`, the store's `now`): only the heartbeat's
period (a third of the lease) is real time, so a slow machine cannot make a lease run out."""

import asyncio
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from app.config import load_settings
from app.devkit.harness import CAST_KEY
from app.kit.queues import QueueRepository
from app.store import DONE, Store, WorkItem
from app.worker import LeasedQueueWorker
from tests.support.units import FakeClock

QUEUE = "outbound"
LEASE = 3.0  # the shortest allowed: a heartbeat every real second
EXTEND_SECONDS = 0.5


class Items(QueueRepository[BaseModel]):
    queue = QUEUE
    model = BaseModel


class SlowExtends(Items):
    """A queue whose every lease extension waits `EXTEND_SECONDS` (behind a busy store)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.extending = asyncio.Event()  # set when an extension is on its way

    async def extend(self, item: WorkItem, until: float) -> bool:
        self.extending.set()
        await asyncio.sleep(EXTEND_SECONDS)
        return await super().extend(item, until)


class HeldWorker(LeasedQueueWorker):
    """Works on an item until the test lets it go (`release`)."""

    def __init__(self, store: Store, clock: FakeClock, items: Items | None = None) -> None:
        settings = load_settings(
            ghl_client_id="id",
            ghl_client_secret="s",
            cast_api_key=CAST_KEY,
            lease_seconds=LEASE,
            poll_interval_seconds=0.05,
        )
        super().__init__(settings, items or Items(store), clock)
        self.store, self.clock = store, clock
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.processed: list[str] = []

    async def _process(self, item: WorkItem) -> None:
        self.started.append(item.id)
        await self.release.wait()
        assert item.lease
        self._let_go()
        await self.store.save(QUEUE, item.id, item.lease, data={}, state=DONE, due_at=self.clock())
        self.processed.append(item.id)


async def eventually(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def lease_ends(store: Store, item_id: str) -> float:
    item = await store.get_item(QUEUE, item_id)
    assert item is not None and item.lease
    return item.due_at  # a claimed item is due again when its lease ends


async def test_a_slow_item_keeps_its_lease_past_the_lease_time(store: Store, clock: FakeClock):
    await store.enqueue(QUEUE, "slow", {}, clock())
    worker = HeldWorker(store, clock)
    runner = asyncio.create_task(worker.run())
    await eventually(lambda: worker.started, "the item is being worked on")
    first_end = await lease_ends(store, "slow")
    clock.advance(LEASE - 0.5)

    extended: list[float] = []

    async def heartbeat_seen() -> None:
        while not extended or extended[-1] <= first_end:
            extended.append(await lease_ends(store, "slow"))
            await asyncio.sleep(0.02)

    await asyncio.wait_for(heartbeat_seen(), timeout=10)
    clock.advance(1.0)  # past the lease the item was claimed with: only the heartbeat keeps it
    assert await store.claim(QUEUE, now=clock(), lease_seconds=LEASE, limit=1) == []

    worker.release.set()
    await eventually(lambda: worker.processed, "the item is done")
    await worker.stop(1)
    await runner
    assert worker.processed == ["slow"]


async def test_an_item_whose_worker_vanished_is_claimable_after_the_lease(
    store: Store, clock: FakeClock
):
    await store.enqueue(QUEUE, "orphan", {}, clock())
    assert len(await store.claim(QUEUE, now=clock(), lease_seconds=LEASE, limit=1)) == 1
    worker = HeldWorker(store, clock)
    worker.release.set()
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)  # several polls (every 0.05 s) while the lease holds
    assert worker.started == []

    clock.advance(LEASE)
    await eventually(lambda: worker.processed, "the orphan is taken over")
    await worker.stop(1)
    await runner
    assert worker.processed == ["orphan"]


async def test_a_heartbeat_extends_every_held_lease_at_once_not_one_after_the_other(
    store: Store, clock: FakeClock
):
    held = [f"item-{i}" for i in range(8)]
    for item_id in held:
        await store.enqueue(QUEUE, item_id, {}, clock())
    worker = HeldWorker(store, clock, SlowExtends(store))
    runner = asyncio.create_task(worker.run())
    await eventually(lambda: len(worker.started) == len(held), "every item is being worked on")
    claimed_until = {item_id: await lease_ends(store, item_id) for item_id in held}
    clock.advance(0.5)  # the extensions reach further than the claims did

    async def all_extended() -> bool:
        ends = [await lease_ends(store, item_id) for item_id in held]
        return all(end > claimed_until[i] for i, end in zip(held, ends, strict=True))

    async def wait_for_all() -> None:  # one by one, the last would be extended after 5 s
        while not await all_extended():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait_for_all(), timeout=LEASE / 3 + 4 * EXTEND_SECONDS)
    worker.release.set()
    await eventually(lambda: len(worker.processed) == len(held), "every item is done")
    await worker.stop(1)
    await runner


async def test_an_item_written_back_while_its_lease_is_being_extended_is_no_lost_lease(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    await store.enqueue(QUEUE, "done", {}, clock())
    items = SlowExtends(store)
    worker = HeldWorker(store, clock, items)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(items.extending.wait(), timeout=5)  # a heartbeat on its way...
    worker.release.set()  # ...when the item is written back
    await eventually(lambda: worker.processed, "the item is done")
    await asyncio.sleep(EXTEND_SECONDS)  # the extension meets the written item

    await worker.stop(1)
    await runner
    assert "lost the lease" not in caplog.text
