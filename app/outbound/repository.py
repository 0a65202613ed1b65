"""The outbox: outbound messages as work items of the `outbound` queue."""

from app.outbound.schemas import OutboundMessage
from app.queues import QueueRepository
from app.store import DONE

QUEUE = "outbound"


class OutboxRepository(QueueRepository[OutboundMessage]):
    queue = QUEUE
    model = OutboundMessage

    async def add(self, message: OutboundMessage) -> bool:
        """False when this GHL messageId was already accepted."""
        return await self._enqueue(message.message_id, message, message.received_at)

    async def recent(self, location_id: str, *, since: float, limit: int) -> list[OutboundMessage]:
        """A location's messages received since `since`, newest first."""
        items = await self._store.list_items(
            QUEUE, key="location_id", value=location_id, since=since, limit=limit
        )
        return [OutboundMessage.model_validate(item.data) for item in items]

    async def find(self, message_id: str) -> tuple[OutboundMessage, bool] | None:
        """The message and whether it is finished (no worker holds or will claim it)."""
        item = await self._store.get_item(QUEUE, message_id)
        if item is None:
            return None
        return OutboundMessage.model_validate(item.data), item.state == DONE

    async def requeue(self, message: OutboundMessage, now: float) -> bool:
        """Make a finished message pending again, due now, with `message` as its data."""
        return await self._store.requeue(
            QUEUE, message.message_id, message.model_dump(mode="json"), now
        )
