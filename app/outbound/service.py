"""Accepting GHL's ProviderOutboundMessage (and the settings page's test SMS): validate,
normalise, store once, wake the worker."""

import logging
import time
from enum import StrEnum
from typing import Any, Protocol

from app.config import Settings
from app.ghl.schemas import ProviderOutboundMessage
from app.kit.logs import mask_phone
from app.metrics import Counters
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage, Part
from app.outbound.splitting import compose_text, split_text
from app.phone import InvalidPhoneNumber, to_cast_local

log = logging.getLogger(__name__)


class Pickup(Protocol):
    """The local outbound worker, as the webhook path sees it (app/worker.py): woken when a
    message is stored; when and how fast it is sent is the worker's business."""

    def wake(self) -> None: ...


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


def build_message(payload: ProviderOutboundMessage, max_chars: int, now: float) -> OutboundMessage:
    """GHL's webhook as an outbox message."""
    return new_message(
        payload.message_id,
        payload.location_id,
        payload.phone,
        compose_text(payload.message, payload.attachments),
        max_chars,
        now,
        contact_id=payload.contact_id,
        attachments=payload.attachments,
    )


def new_message(
    message_id: str,
    location_id: str,
    phone: str,
    text: str,
    max_chars: int,
    now: float,
    **fields: Any,
) -> OutboundMessage:
    """An outbox message as received: split into parts, the number in Cast's format; failed at
    once when the number or the text cannot be sent."""
    message = OutboundMessage(
        message_id=message_id,
        location_id=location_id,
        phone=phone,
        parts=[Part(text=part) for part in split_text(text, max_chars)],
        received_at=now,
        **fields,
    )
    message.record(now, "received", f"{len(message.parts)} part(s)")
    try:
        message.to = to_cast_local(phone)
    except InvalidPhoneNumber as exc:
        message.finish(now, "failed", "INVALID_PHONE", f"Cannot send to {mask_phone(phone)}: {exc}")
    if not text.strip():
        message.finish(now, "failed", "EMPTY_MESSAGE", "The message is empty: nothing to send")
    return message


class OutboundService:
    def __init__(
        self,
        settings: Settings,
        outbox: OutboxRepository,
        counters: Counters,
        worker: Pickup,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._counters = counters
        self._worker = worker

    async def accept(self, payload: ProviderOutboundMessage) -> Accepted:
        if payload.type.upper() != "SMS":
            self._counters.inc("webhooks_ignored")
            log.info(
                "ignored non-SMS outbound message",
                extra={"message_id": payload.message_id, "type": payload.type},
            )
            return Accepted.IGNORED
        now = time.time()
        message = build_message(payload, self._settings.cast_max_message_chars, now)
        if not await self._outbox.add(message):
            self._counters.inc("webhooks_duplicate")
            log.info("duplicate outbound webhook", extra={"message_id": payload.message_id})
            return Accepted.DUPLICATE
        self._worker.wake()
        self._counters.inc("messages_received")
        if message.status == "failed":  # refused before sending (INVALID_PHONE, EMPTY_MESSAGE)
            self._counters.inc("messages_failed", reason=message.error_code)
        log.info(
            "outbound message queued",
            extra={
                "message_id": payload.message_id,
                "location_id": payload.location_id,
                "to": mask_phone(payload.phone),
                "parts": len(message.parts),
            },
        )
        return Accepted.QUEUED

    async def queue_test_sms(
        self, message_id: str, location_id: str, phone: str, text: str, now: float
    ) -> bool:
        """A test SMS (the settings page's): sent as any message is, but never reported to GHL
        (GHL has no such message) and never a route for replies. False when `message_id` was
        queued already."""
        limit = self._settings.cast_max_message_chars
        message = new_message(message_id, location_id, phone, text, limit, now, synthetic=True)
        message.record(now, "test_sms", "queued from the settings page")
        if not await self._outbox.add(message):
            return False
        self._worker.wake()
        return True
