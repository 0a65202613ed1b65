"""The outbox: outbound messages as work items of the `outbound` queue."""

from app.outbound.schemas import OutboundMessage
from app.store import DONE, PENDING, Store, WorkItem

QUEUE = "outbound"


class OutboxRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, message: OutboundMessage) -> bool:
        """False when this GHL messageId was already accepted."""
        return await self._store.enqueue(
            QUEUE, message.message_id, message.model_dump(mode="json"), message.received_at
        )

    async def claim(self, *, now: float, lease_seconds: float, limit: int) -> list[WorkItem]:
        return await self._store.claim(QUEUE, now=now, lease_seconds=lease_seconds, limit=limit)

    async def extend(self, item: WorkItem, until: float) -> bool:
        assert item.lease is not None
        return await self._store.extend_lease(QUEUE, item.id, item.lease, until)

    async def reschedule(self, item: WorkItem, message: OutboundMessage, due_at: float) -> bool:
        assert item.lease is not None
        return await self._store.save(
            QUEUE,
            item.id,
            item.lease,
            data=message.model_dump(mode="json"),
            state=PENDING,
            due_at=due_at,
        )

    async def finish(self, item: WorkItem, message: OutboundMessage, now: float) -> bool:
        assert item.lease is not None
        return await self._store.save(
            QUEUE,
            item.id,
            item.lease,
            data=message.model_dump(mode="json"),
            state=DONE,
            due_at=now,
        )

    async def get(self, message_id: str) -> OutboundMessage | None:
        item = await self._store.get_item(QUEUE, message_id)
        return OutboundMessage.model_validate(item.data) if item else None

    async def recent(self, location_id: str, *, since: float, limit: int) -> list[OutboundMessage]:
        """A location's messages received since `since`, newest first."""
        items = await self._store.list_items(
            QUEUE, key="location_id", value=location_id, since=since, limit=limit
        )
        return [OutboundMessage.model_validate(item.data) for item in items]

    async def counts(self) -> dict[str, int]:
        return await self._store.count_items(QUEUE)

    async def oldest_pending(self) -> float | None:
        return await self._store.oldest_due(QUEUE)
