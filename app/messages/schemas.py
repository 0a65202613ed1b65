"""The message log: one selection of outbound and inbound messages (the query), one row per
message (phone masked, body shown), one page (`{"messages": [...], "next_cursor": ...}`)."""

import base64
import binascii
import json
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.inbound.schemas import InboundSMS
from app.kit.logs import mask_phone, mask_phones_in
from app.outbound.schemas import OutboundMessage
from app.outbound.splitting import joined_text
from app.phone import InvalidPhoneNumber, to_e164
from app.timestamps import utc_iso

Direction = Literal["outbound", "inbound"]
# One vocabulary for both directions: `pending` is an outbound message not finished yet, or an
# inbound SMS not yet in GHL; `unroutable` is inbound only.
Status = Literal["pending", "delivered", "failed", "unroutable"]
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY_CHARS = 200


def _timestamp(value: object) -> object:
    """An ISO-8601 date-time (no offset: UTC) or a date (its UTC midnight), as a Unix time."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text) if "T" in text or " " in text else None
        if parsed is None:
            day = date.fromisoformat(text)
            parsed = datetime(day.year, day.month, day.day)
    except ValueError:
        raise ValueError("not an ISO-8601 date or date-time, e.g. 2026-12-07T20:03:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class Cursor(BaseModel):
    """Where the previous page ended: its last message's (time, id). Opaque to clients."""

    at: float
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.at, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, item_id = json.loads(raw)
            return cls(at=at, id=item_id)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ValueError("not a cursor this API returned") from exc


class MessageQuery(BaseModel):
    """The filters of `GET /api/admin/messages`, `cast-ghl messages` and the page's search."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    location_id: str | None = Field(None, min_length=1, max_length=100)
    direction: Direction | None = None
    status: Status | None = None
    since: float | None = None
    until: float | None = None
    phone: str | None = Field(None, max_length=40)
    q: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: Cursor | None = None

    @field_validator("location_id", "phone", "q", "direction", "status", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _when(cls, value: object) -> object:
        return _timestamp(value)

    @field_validator("phone")
    @classmethod
    def _ph_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return to_e164(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from None

    @field_validator("cursor", mode="before")
    @classmethod
    def _cursor(cls, value: object) -> object:
        if isinstance(value, str):
            return Cursor.decode(value) if value.strip() else None
        return value

    @field_validator("until")
    @classmethod
    def _after_since(cls, value: float | None, info: ValidationInfo) -> float | None:
        since = info.data.get("since")
        if value is not None and since is not None and since >= value:
            raise ValueError("must be after since")
        return value


class LogEntry(BaseModel):
    """One message of the log. The customer's number is masked; the body is shown (it is what
    the operator searches), with any number in a failure reason masked."""

    id: str  # the GHL messageId (outbound) or the inbound SMS's id
    direction: Direction
    at: str  # received by the bridge, UTC ISO-8601 to the second
    timestamp: float
    location_id: str | None
    location_name: str | None = None
    phone: str  # the customer's number, masked to its last 4 digits
    sender: str | None  # the sender ID or number it went out with / was sent to
    status: Status
    error_code: str | None
    error_message: str | None
    parts: int
    text: str
    test: bool = False  # a test SMS sent from the settings page

    @classmethod
    def of_outbound(cls, message: OutboundMessage) -> "LogEntry":
        return cls(
            id=message.message_id,
            direction="outbound",
            at=utc_iso(message.received_at),
            timestamp=message.received_at,
            location_id=message.location_id,
            phone=mask_phone(message.phone),
            sender=message.sender_id,
            status=message.status or "pending",
            error_code=message.error_code,
            error_message=mask_phones_in(message.error_message),
            parts=len(message.parts),
            text=joined_text([part.text for part in message.parts]),
            test=message.synthetic,
        )

    @classmethod
    def of_inbound(cls, message: InboundSMS) -> "LogEntry":
        return cls(
            id=message.id,
            direction="inbound",
            at=utc_iso(message.accepted_at),
            timestamp=message.accepted_at,
            location_id=message.location_id,
            phone=mask_phone(message.phone),
            sender=message.to,
            status=message.status,
            error_code=message.error_code,
            error_message=mask_phones_in(message.error_message),
            parts=1,
            text=message.text,
        )


class MessagePage(BaseModel):
    messages: list[LogEntry]
    next_cursor: str | None  # None: this was the last page


CSV_COLUMNS = (
    "at",
    "direction",
    "location_id",
    "location_name",
    "phone",
    "sender",
    "status",
    "error_code",
    "error_message",
    "parts",
    "text",
    "id",
)
