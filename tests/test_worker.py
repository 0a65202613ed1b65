"""The leased-queue runner: heartbeats keep live work, dead work comes back after the lease."""

import asyncio
import time

from pydantic import BaseModel

from app.config import load_settings
from app.devkit.harness import CAST_KEY
from app.kit.queues import QueueRepository
from app.store import DONE, Store, WorkItem
from app.worker import LeasedQueueWorker

QUEUE = "outbound"


class Items(QueueRepository[BaseModel]):
    queue = QUEUE
    model = BaseModel


class SlowWorker(LeasedQueueWorker):
    def __init__(self, store: Store, seconds: float) -> None:
        settings = load_settings(
            ghl_client_id="id",
            ghl_client_secret="s",
            cast_api_key=CAST_KEY,
            lease_seconds=3,
            poll_interval_seconds=0.05,
        )
        super().__init__(settings, Items(store))
        self.store, self.seconds, self.processed = store, seconds, []

    async def _process(self, item: WorkItem) -> None:
        await asyncio.sleep(self.seconds)
        assert item.lease
        await self.store.save(QUEUE, item.id, item.lease, data={}, state=DONE, due_at=time.time())
        self.processed.append(item.id)


async def test_a_slow_item_keeps_its_lease_past_the_lease_time(store: Store):
    await store.enqueue(QUEUE, "slow", {}, time.time())
    worker = SlowWorker(store, seconds=4.5)
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(3.5)  # past the 3 s lease: only the heartbeat keeps it
    assert await store.claim(QUEUE, now=time.time(), lease_seconds=3, limit=1) == []
    await asyncio.sleep(1.5)
    await worker.stop(1)
    await runner
    assert worker.processed == ["slow"]


async def test_an_item_whose_worker_vanished_is_claimable_after_the_lease(store: Store):
    await store.enqueue(QUEUE, "orphan", {}, time.time())
    assert len(await store.claim(QUEUE, now=time.time(), lease_seconds=3, limit=1)) == 1
    worker = SlowWorker(store, seconds=0)
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    assert worker.processed == []
    for _ in range(60):
        if worker.processed:
            break
        await asyncio.sleep(0.1)
    await worker.stop(1)
    await runner
    assert worker.processed == ["orphan"]
