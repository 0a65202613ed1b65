"""What the outbox and the inbox have in common: a store queue holding one pydantic model each."""

from typing import ClassVar

from pydantic import BaseModel

from app.store import DONE, PENDING, Store, WorkItem


class QueueRepository[M: BaseModel]:
    """Typed access to one work queue. Subclasses name the queue and the model it holds."""

    queue: ClassVar[str]
    model: type[M]

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _enqueue(self, item_id: str, message: M, due_at: float) -> bool:
        return await self._store.enqueue(
            self.queue, item_id, message.model_dump(mode="json"), due_at
        )

    async def claim(self, *, now: float, lease_seconds: float, limit: int) -> list[WorkItem]:
        return await self._store.claim(
            self.queue, now=now, lease_seconds=lease_seconds, limit=limit
        )

    async def extend(self, item: WorkItem, until: float) -> bool:
        assert item.lease is not None
        return await self._store.extend_lease(self.queue, item.id, item.lease, until)

    async def _save(self, item: WorkItem, message: M, *, state: str, due_at: float) -> bool:
        assert item.lease is not None
        return await self._store.save(
            self.queue,
            item.id,
            item.lease,
            data=message.model_dump(mode="json"),
            state=state,
            due_at=due_at,
        )

    async def reschedule(self, item: WorkItem, message: M, due_at: float) -> bool:
        """Write progress and hand the item back, due again at `due_at`."""
        return await self._save(item, message, state=PENDING, due_at=due_at)

    async def finish(self, item: WorkItem, message: M, now: float) -> bool:
        return await self._save(item, message, state=DONE, due_at=now)

    async def get(self, item_id: str) -> M | None:
        item = await self._store.get_item(self.queue, item_id)
        return self.model.model_validate(item.data) if item else None

    async def counts(self) -> dict[str, int]:
        return await self._store.count_items(self.queue)

    async def oldest_pending(self) -> float | None:
        return await self._store.oldest_due(self.queue)
