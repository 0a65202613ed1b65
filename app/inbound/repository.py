"""The inbox (inbound messages as work items of the `inbound` queue) and the recipient
directory (which locations texted a number, and from which sender). The only inbound code
touching the store.
"""

import logging

from app.inbound.schemas import InboundSMS, RecentSender, Recipient
from app.kit.logs import mask_phone
from app.kit.queues import QueueRepository
from app.phone import InvalidPhoneNumber, to_e164
from app.store import DONE, Store, WorkItem

log = logging.getLogger(__name__)

QUEUE = "inbound"
RECIPIENTS = "recipients"
UNROUTABLE = "inbound_unroutable"
# Compare-and-swap rounds: a failed round means another writer succeeded, so this bounds the
# number of concurrent writers to one number, not the time.
SWAP_TRIES = 100
# Senders kept per number, newest first. Dropping the oldest of many never makes a number look
# as if only one location texted it.
MAX_SENDERS = 50


class RecipientDirectory:
    """Every location that texted each number (keyed by E.164) within `keep_seconds`, with when
    it last did and the sender ID or number its SMS went out with."""

    def __init__(self, store: Store, keep_seconds: float) -> None:
        self._store = store
        self._keep_seconds = keep_seconds

    async def senders(self, phone_e164: str, since: float) -> list[RecentSender]:
        """The locations that texted `phone_e164` at or after `since`, newest first."""
        doc = await self._store.get_doc(RECIPIENTS, phone_e164)
        if doc is None:
            return []
        found = Recipient.model_validate(doc.data).senders
        return sorted((s for s in found if s.at >= since), key=lambda s: s.at, reverse=True)

    async def remember(
        self, phone: str | None, location_id: str, sender: str | None, at: float
    ) -> None:
        """Record that `location_id` texted `phone` (any PH format) at `at` from `sender`.

        Best effort: called by the outbound worker once Cast accepted a message; a failure is
        logged and never affects the outbound message. For each location a later `at` wins.
        """
        try:
            phone_e164 = to_e164(phone or "")
        except InvalidPhoneNumber:
            return
        entry = RecentSender(location_id=location_id, sender=sender, at=at)
        try:
            await self._remember(phone_e164, entry)
        except Exception:
            log.exception(
                "could not remember who texted a number",
                extra={"to": mask_phone(phone), "location_id": location_id},
            )

    async def _remember(self, phone_e164: str, entry: RecentSender) -> None:
        for _ in range(SWAP_TRIES):
            doc = await self._store.get_doc(RECIPIENTS, phone_e164)
            current = Recipient.model_validate(doc.data) if doc else Recipient()
            merged = self._merged(current, entry)
            if merged is None:
                return
            if await self._store.swap_doc(
                RECIPIENTS, phone_e164, doc.rev if doc else 0, merged.model_dump()
            ):
                return
        raise RuntimeError(f"{SWAP_TRIES} concurrent updates of one recipient")

    def _merged(self, current: Recipient, entry: RecentSender) -> Recipient | None:
        """`current` with `entry` in it and senders past `keep_seconds` dropped; None when the
        location's recorded send is not older than `entry`."""
        mine = [s for s in current.senders if s.location_id == entry.location_id]
        if mine and mine[0].at >= entry.at:
            return None
        horizon = entry.at - self._keep_seconds
        others = [
            s for s in current.senders if s.location_id != entry.location_id and s.at >= horizon
        ]
        newest = sorted([entry, *others], key=lambda s: s.at, reverse=True)
        return Recipient(senders=newest[:MAX_SENDERS])


class InboxRepository(QueueRepository[InboundSMS]):
    """Inbound messages: insert once by de-duplication key, leased work, unroutable list."""

    queue = QUEUE
    model = InboundSMS

    async def add(self, message: InboundSMS) -> bool:
        """False when a message with this de-duplication key was already accepted."""
        return await self._enqueue(message.id, message, message.accepted_at)

    async def finish(self, item: WorkItem, message: InboundSMS, now: float) -> bool:
        """Write the final state; an unroutable message is also listed for re-routing."""
        if message.status == "unroutable":
            await self._store.put_doc(
                UNROUTABLE, message.id, {"id": message.id, "at": message.finished_at or now}
            )
        return await super().finish(item, message, now)

    async def list_unroutable(self, limit: int = 1000) -> list[InboundSMS]:
        """Messages kept because no location could be chosen, oldest id first."""
        found = []
        for doc in await self._store.list_docs(UNROUTABLE, limit):
            message = await self.get(doc.id)
            if message is not None and message.status == "unroutable":
                found.append(message)
        return found

    async def reroute(self, message_id: str, location_id: str, now: float) -> bool:
        """Deliver a finished, undelivered (unroutable or failed) message to `location_id`.

        False when the message does not exist, is still being worked on, or was delivered.
        """
        item = await self._store.get_item(QUEUE, message_id)
        if item is None or item.state != DONE:
            return False
        message = InboundSMS.model_validate(item.data)
        if message.status == "delivered":
            return False
        message.assign(now, location_id, "manual")
        if not await self._store.requeue(QUEUE, message_id, message.model_dump(mode="json"), now):
            return False
        await self._store.delete_doc(UNROUTABLE, message_id)
        return True

    async def discard(self, message_id: str) -> bool:
        """Take an unroutable message off the list for good. It stays stored, undelivered.

        False when it was not listed."""
        return await self._store.delete_doc(UNROUTABLE, message_id)
