"""The inbox (inbound messages as work items of the `inbound` queue) and the recipient
directory (which location last sent an SMS to a number). The only inbound code touching the store.
"""

import logging

from app.inbound.schemas import InboundSMS, LastSender
from app.logs import mask_phone
from app.phone import InvalidPhoneNumber, to_e164
from app.queues import QueueRepository
from app.store import DONE, Store, WorkItem

log = logging.getLogger(__name__)

QUEUE = "inbound"
RECIPIENTS = "recipients"
UNROUTABLE = "inbound_unroutable"
SWAP_TRIES = 5


class RecipientDirectory:
    """The location that most recently sent an SMS to each number, keyed by E.164."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def last_sender(self, phone_e164: str) -> LastSender | None:
        doc = await self._store.get_doc(RECIPIENTS, phone_e164)
        return LastSender.model_validate(doc.data) if doc else None

    async def remember(self, phone: str | None, location_id: str, at: float) -> None:
        """Record that `location_id` sent to `phone` (any PH format) at `at`.

        Best effort: called by the outbound worker once Cast accepted a message; a failure is
        logged and never affects the outbound message. A later `at` always wins.
        """
        try:
            await self._remember(to_e164(phone or ""), location_id, at)
        except InvalidPhoneNumber:
            return
        except Exception:
            log.exception(
                "could not remember the last sender of a number",
                extra={"to": mask_phone(phone), "location_id": location_id},
            )

    async def _remember(self, phone_e164: str, location_id: str, at: float) -> None:
        data = LastSender(location_id=location_id, at=at).model_dump()
        for _ in range(SWAP_TRIES):
            doc = await self._store.get_doc(RECIPIENTS, phone_e164)
            if doc is not None and LastSender.model_validate(doc.data).at > at:
                return
            if await self._store.swap_doc(RECIPIENTS, phone_e164, doc.rev if doc else 0, data):
                return
        await self._store.put_doc(RECIPIENTS, phone_e164, data)


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
