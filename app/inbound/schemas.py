"""The gateway's inbound payload (our contract, CAST_API_REFERENCE.md §11) and the stored record."""

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.jobs import Job
from app.kit.logs import mask_phones_in
from app.ph_time import PH_TIME
from app.phone import InvalidPhoneNumber, to_e164

MAX_TEXT_CHARS = 10_000

RoutedBy = Literal["recent_outbound", "route", "sender_id", "manual"]
Status = Literal["pending", "delivered", "unroutable", "failed"]


class InboundPayload(BaseModel):
    """`POST /webhooks/cast/inbound` body. Unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore")

    sender: str = Field(alias="from", max_length=40)
    message: str = Field(max_length=MAX_TEXT_CHARS)
    to: str | None = Field(None, max_length=40)
    id: str | None = Field(None, max_length=200)
    received_at: datetime | None = None

    @field_validator("sender")
    @classmethod
    def _ph_mobile(cls, value: str) -> str:
        try:
            return to_e164(value)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from None

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("to", "id")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        value = value.strip() if value is not None else None
        return value or None

    @field_validator("received_at", mode="before")
    @classmethod
    def _iso_8601(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be an ISO-8601 string, e.g. 2026-07-20T08:15:30+08:00")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not an ISO-8601 date-time, e.g. 2026-07-20T08:15:30+08:00") from None
        if parsed.tzinfo is None:  # no offset: Philippine time, where the gateway's SIMs are
            parsed = parsed.replace(tzinfo=PH_TIME)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the last representable UTC
            raise ValueError("out of range, e.g. 2026-07-20T08:15:30+08:00") from None

    @property
    def dedup_key(self) -> str:
        """The gateway's id when given, else a digest of sender + received_at + text."""
        if self.id is not None:
            return f"gw:{self.id}"
        assert self.received_at is not None, "id or received_at is required"
        digest = hashlib.sha256(
            "\n".join([self.sender, self.received_at.isoformat(), self.message]).encode()
        ).hexdigest()
        return f"h:{digest[:40]}"


class RecentSender(BaseModel):
    """A location that sent an SMS to a number: when it last did, and the sender ID or number
    the SMS went out with (None: Cast picked the account's default, unknown to the bridge)."""

    location_id: str
    sender: str | None = None
    at: float


class Recipient(BaseModel):
    """Every location that texted one number (the `recipients` collection, keyed by E.164).

    A document of the earlier shape `{location_id, at}` (only the last sender) reads as one
    sender whose sender ID is unknown."""

    senders: list[RecentSender] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _earlier_shape(cls, data: object) -> object:
        if isinstance(data, dict) and "senders" not in data and "location_id" in data:
            return {"senders": [data]}
        return data


class InboundSMS(Job):
    """One received SMS: what arrived, where it was routed and what GHL answered."""

    id: str
    gateway_id: str | None = None
    phone: str
    text: str
    to: str | None = None
    received_at: str | None = None
    accepted_at: float
    started_at: float
    location_id: str | None = None
    routed_by: RoutedBy | None = None
    status: Status = "pending"
    contact_id: str | None = None
    contact_created: bool = False
    conversation_id: str | None = None
    ghl_message_id: str | None = None
    in_ghl: bool = False  # added to the GHL conversation (never added twice by a retry)
    # An opt-out/opt-in keyword (OPT_OUT_KEYWORDS, OPT_IN_KEYWORDS): two stages of its own, the
    # suppression list updated before GHL is asked, the contact's DND update queued after.
    keyword: str | None = None
    opt_out: bool | None = None
    consent_recorded: bool = False
    dnd_requested: bool = False
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None

    @classmethod
    def from_payload(cls, payload: InboundPayload, now: float) -> "InboundSMS":
        message = cls(
            id=payload.dedup_key,
            gateway_id=payload.id,
            phone=payload.sender,
            text=payload.message,
            to=payload.to,
            received_at=payload.received_at.isoformat() if payload.received_at else None,
            accepted_at=now,
            started_at=now,
        )
        message.record(now, "received", f"{len(payload.message)} chars")
        return message

    @property
    def date(self) -> str:
        """When the SMS was received (the gateway's time when given), ISO-8601 UTC."""
        if self.received_at is not None:
            return self.received_at
        return datetime.fromtimestamp(self.accepted_at, UTC).isoformat()

    @property
    def received_timestamp(self) -> float:
        """`date` as a Unix time."""
        if self.received_at is not None:
            return datetime.fromisoformat(self.received_at).timestamp()
        return self.accepted_at

    def assign(self, at: float, location_id: str, routed_by: RoutedBy) -> None:
        """Route to `location_id` and (re)start delivery from now."""
        self.location_id, self.routed_by = location_id, routed_by
        self.status, self.finished_at, self.started_at = "pending", None, at
        self.error_code = self.error_message = None
        self.token_refreshed = False
        if routed_by == "manual":
            self.contact_id = None
            self.in_ghl = self.consent_recorded = self.dnd_requested = False
        self.record(at, "routed", f"{location_id} ({routed_by})")

    def finish(
        self, at: float, status: Status, code: str | None = None, message: str | None = None
    ) -> None:
        self.status, self.error_code = status, code
        self.error_message = mask_phones_in(message)
        self.finished_at = at
        self.record(at, status, message)
