"""The message log's reads: both queues (the outbox and the inbox) through one store query each,
merged newest first. The only message-log code touching the store."""

from app.inbound.repository import QUEUE as INBOUND
from app.inbound.schemas import InboundSMS
from app.messages.schemas import Cursor, Direction, LogEntry, MessageQuery
from app.outbound.repository import QUEUE as OUTBOUND
from app.outbound.schemas import OutboundMessage
from app.phone import to_cast_local
from app.store import ItemQuery, Store, WorkItem

# Where each direction keeps what the log filters on: the number (outbound: Cast's local
# format, inbound: E.164) and the body.
_PHONE_FIELD = {"outbound": "to", "inbound": "phone"}
_TEXT_FIELDS = {"outbound": ("parts.text",), "inbound": ("text",)}
_QUEUES: dict[Direction, str] = {"outbound": OUTBOUND, "inbound": INBOUND}


def _stored_status(direction: Direction, status: str) -> str | None:
    """The `status` field value of a log status (an unfinished outbound message has none)."""
    return None if direction == "outbound" and status == "pending" else status


def _store_query(direction: Direction, query: MessageQuery, limit: int) -> ItemQuery | None:
    """The store query for one direction; None when that direction cannot match."""
    if query.direction not in (None, direction):
        return None
    if direction == "outbound" and query.status == "unroutable":
        return None
    equal: list[tuple[str, str | None]] = []
    if query.location_id is not None:
        equal.append(("location_id", query.location_id))
    if query.status is not None:
        equal.append(("status", _stored_status(direction, query.status)))
    if query.phone is not None:
        number = to_cast_local(query.phone) if direction == "outbound" else query.phone
        equal.append((_PHONE_FIELD[direction], number))
    return ItemQuery(
        equal=tuple(equal),
        since=query.since,
        until=query.until,
        text=query.q,
        text_fields=_TEXT_FIELDS[direction] if query.q else (),
        before=(query.cursor.at, query.cursor.id) if query.cursor else None,
        limit=limit,
    )


def _entry(direction: Direction, item: WorkItem) -> LogEntry:
    if direction == "outbound":
        return LogEntry.of_outbound(OutboundMessage.model_validate(item.data))
    return LogEntry.of_inbound(InboundSMS.model_validate(item.data))


class MessageLogRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def select(self, query: MessageQuery, limit: int) -> list[tuple[Cursor, LogEntry]]:
        """Up to `limit` messages of both directions, newest first by (time, id), each with
        the cursor of the page that starts after it."""
        found: list[tuple[Cursor, LogEntry]] = []
        for direction, queue in _QUEUES.items():
            store_query = _store_query(direction, query, limit)
            if store_query is None:
                continue
            for item in await self._store.find_items(queue, store_query):
                found.append((Cursor(at=item.created_at, id=item.id), _entry(direction, item)))
        found.sort(key=lambda row: (row[0].at, row[0].id), reverse=True)
        return found[:limit]
