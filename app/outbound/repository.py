"""The outbox: outbound messages as work items of the `outbound` queue; the messages GHL could
not be told about (`refused_messages`), for the operator; and the receipt ledgers of the Cast
keys (what their `/sms/logs` reads found)."""

from app.kit.queues import QueueRepository
from app.outbound.schemas import LoggedReceipt, OutboundMessage, ReceiptLedger, RefusedMessage
from app.store import DONE, Store, StoreUnavailable

QUEUE = "outbound"
REFUSED = "refused_messages"
MAX_REFUSED_LISTED = 1000


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


class RefusedMessages:
    """Messages for a location without an installation that no token could report to GHL."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, refused: RefusedMessage) -> None:
        await self._store.put_doc(REFUSED, refused.message_id, refused.model_dump(mode="json"))

    async def listing(self, limit: int = MAX_REFUSED_LISTED) -> list[RefusedMessage]:
        """The newest first."""
        docs = await self._store.list_docs(REFUSED, limit)
        rows = [RefusedMessage.model_validate(doc.data) for doc in docs]
        return sorted(rows, key=lambda row: row.refused_at, reverse=True)


LEDGER_COLLECTION = "cast_receipt_ledgers"
ROUND_PREFIX = "cast-logs:"
MERGE_TRIES = 5


class ReceiptLedgers:
    """The receipt ledger of each Cast key (by fingerprint), and the claim on its logs rounds."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def claim_round(self, fingerprint: str, *, now: float, interval: float) -> bool:
        """True for one caller per `interval` across every process: that one reads the logs."""
        return await self._store.take_quota(
            ROUND_PREFIX + fingerprint, now=now, window=interval, limit=1
        )

    async def get(self, fingerprint: str) -> ReceiptLedger:
        doc = await self._store.get_doc(LEDGER_COLLECTION, fingerprint)
        return ReceiptLedger.model_validate(doc.data) if doc else ReceiptLedger()

    async def merge(
        self,
        fingerprint: str,
        entries: dict[str, LoggedReceipt],
        *,
        read_at: float | None = None,
        failed_at: float | None = None,
        keep_since: float,
    ) -> ReceiptLedger:
        """Add a read's outcome (compare-and-swap: two overlapping reads both count)."""
        for _ in range(MERGE_TRIES):
            doc = await self._store.get_doc(LEDGER_COLLECTION, fingerprint)
            ledger = ReceiptLedger.model_validate(doc.data) if doc else ReceiptLedger()
            merged = ledger.merged(
                entries, read_at=read_at, failed_at=failed_at, keep_since=keep_since
            )
            rev = doc.rev if doc else 0
            data = merged.model_dump(mode="json")
            if await self._store.swap_doc(LEDGER_COLLECTION, fingerprint, rev, data):
                return merged
        raise StoreUnavailable(f"the receipt ledger changed {MERGE_TRIES} times during a merge")
