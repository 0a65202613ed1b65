"""Accepting an SMS from Cast's gateway: store it once, wake the worker; re-routing kept ones."""

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from app.inbound.repository import InboxRepository
from app.inbound.schemas import InboundPayload, InboundSMS
from app.kit.logs import mask_phone
from app.metrics import Counters

log = logging.getLogger(__name__)


def mask_receiver(to: str | None) -> str | None:
    """A receiving number is masked like any phone number; a sender ID is not personal."""
    if to is None or not any(ch.isdigit() for ch in to):
        return to
    return mask_phone(to)


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


class InboundService:
    def __init__(
        self, inbox: InboxRepository, counters: Counters, wake_worker: Callable[[], None]
    ) -> None:
        self._inbox = inbox
        self._counters = counters
        self._wake_worker = wake_worker

    async def accept(self, payload: InboundPayload) -> tuple[Accepted, str]:
        """Store the message under its de-duplication key (before the gateway gets its 2xx)."""
        message = InboundSMS.from_payload(payload, time.time())
        if not await self._inbox.add(message):
            self._counters.inc("inbound_duplicate")
            log.info("duplicate inbound SMS", extra={"inbound_id": message.id})
            return Accepted.DUPLICATE, message.id
        self._counters.inc("inbound_received")
        self._wake_worker()
        log.info(
            "inbound SMS queued",
            extra={
                "inbound_id": message.id,
                "from": mask_phone(message.phone),
                "to": mask_receiver(message.to),
            },
        )
        return Accepted.QUEUED, message.id

    async def list_unroutable(self, limit: int = 1000) -> list[InboundSMS]:
        return await self._inbox.list_unroutable(limit)

    async def reroute(self, message_id: str, location_id: str) -> bool:
        """Deliver a kept (unroutable or failed) message to `location_id`."""
        if not await self._inbox.reroute(message_id, location_id, time.time()):
            return False
        self._counters.inc("inbound_rerouted")
        log.info(
            "inbound SMS re-routed", extra={"inbound_id": message_id, "location_id": location_id}
        )
        self._wake_worker()
        return True
