"""What the admin API and the operator CLI show and accept. Never a token or a key; phone
numbers masked to their last 4 digits, as in the logs."""

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from app.cast.schemas import Channel, checked_channel, checked_sender_id
from app.inbound.schemas import InboundSMS
from app.jobs import HistoryEvent
from app.kit.logs import mask_phone, mask_phones_in
from app.optouts.schemas import OptOutView
from app.outbound.schemas import OutboundMessage, RefusedMessage
from app.timestamps import UtcTime, utc_iso, utc_iso_text


class PartView(BaseModel):
    chars: int
    cast_message_id: str | None
    cast_parts: int | None
    dlr: str | None
    dlr_status: str | None
    channel: str | None  # the Cast channel it was accepted on: sms or sim
    resends: int


class HistoryEventView(HistoryEvent):
    at: UtcTime


class RefusedMessageView(RefusedMessage):
    received_at: UtcTime
    refused_at: UtcTime

    @classmethod
    def of(cls, refused: RefusedMessage) -> "RefusedMessageView":
        return cls.model_validate(refused.model_dump())


class MessageView(BaseModel):
    """One outbound message and its history (the outbox document, phone masked, no text)."""

    message_id: str
    location_id: str
    contact_id: str | None
    to: str
    channel: str | None  # sms or sim; None before the first send attempt
    sender_id: str | None
    state: Literal["pending", "done"]
    stage: str
    status: str  # sending, delivered, failed
    error_code: str | None
    error_message: str | None
    delivery: str | None
    received_at: UtcTime
    accepted_at: UtcTime | None
    finished_at: UtcTime | None
    reported: bool
    synthetic: bool
    send_attempts: int
    report_attempts: int
    polls: int
    requeues: int
    parts: list[PartView]
    history: list[HistoryEventView]

    @classmethod
    def of(cls, message: OutboundMessage, finished: bool) -> "MessageView":
        return cls(
            message_id=message.message_id,
            location_id=message.location_id,
            contact_id=message.contact_id,
            to=mask_phone(message.phone),
            channel=message.channel,
            sender_id=message.sender_id,
            state="done" if finished else "pending",
            stage=message.stage,
            status=message.status or "sending",
            error_code=message.error_code,
            error_message=mask_phones_in(message.error_message),
            delivery=message.delivery,
            received_at=message.received_at,
            accepted_at=message.accepted_at,
            finished_at=message.finished_at,
            reported=message.reported,
            synthetic=message.synthetic,
            send_attempts=message.send_attempts,
            report_attempts=message.report_attempts,
            polls=message.polls,
            requeues=message.requeues,
            parts=[
                PartView(
                    chars=len(part.text),
                    cast_message_id=part.cast_message_id,
                    cast_parts=part.cast_parts,
                    dlr=part.dlr,
                    dlr_status=part.dlr_status,
                    channel=part.channel,
                    resends=part.resends,
                )
                for part in message.parts
            ],
            history=[
                HistoryEventView(at=e.at, event=e.event, detail=mask_phones_in(e.detail))
                for e in message.history
            ],
        )


class UnroutableView(BaseModel):
    """An inbound SMS no location could be chosen for. The text is shown, and the receiving
    number in full (a sub-account's sender or SIM, not personal): the operator reads them to
    decide where it belongs. The customer's number stays masked."""

    id: str
    sender: str = Field(serialization_alias="from")
    to: str | None
    text: str
    received_at: str
    reason: str | None

    @classmethod
    def of(cls, message: InboundSMS) -> "UnroutableView":
        return cls(
            id=message.id,
            sender=mask_phone(message.phone),
            to=message.to,
            text=message.text,
            received_at=utc_iso_text(message.received_at)
            if message.received_at
            else utc_iso(message.accepted_at),
            reason=message.error_message,
        )


class RerouteBody(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    location_id: str = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("location_id", "locationId")
    )


class SenderIdBody(BaseModel):
    """The Go bridge's body, `{"sender_id": "..."}` (`senderId` accepted too); null or "" clears
    it (the location then sends with CAST_SENDER_ID, or its own Cast account's default).
    `channel` (`sms` or `sim`) sets the sender's Cast channel by hand, for when Cast's sender-ID
    list cannot say; absent or null: as Cast lists it."""

    model_config = ConfigDict(str_strip_whitespace=True)

    sender_id: str | None = Field(validation_alias=AliasChoices("sender_id", "senderId"))
    channel: Channel | None = None

    @field_validator("sender_id")
    @classmethod
    def _shape(cls, value: str | None) -> str | None:
        return checked_sender_id(value)

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        return checked_channel(value)


class SenderIdResult(BaseModel):
    location_id: str
    sender_id: str | None
    enabled: bool
    own_api_key: bool
    effective_sender_id: str | None  # what the next SMS of this location is sent with
    channel: str  # the Cast channel its next SMS goes out through (sms or sim)
    channel_source: str  # setting (by hand), cast (Cast's sender-ID list) or assumed
    checked_with_cast: bool  # Cast's list of approved sender IDs was read and names it
    note: str | None = None  # why it could not be checked
    # Default-account senders this location may send as (empty with its own key: all of its own)
    assigned_senders: list[str] = []
    # Other locations (of the same agency) assigned this sender: replies to it go to the one
    # that texted the customer lately
    shared_with: list[str] = []
    installed: bool
    updated_at: UtcTime


class LiftOptOutBody(BaseModel):
    """Why an operator takes a number off a location's opt-out list (logged)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    reason: str = Field(min_length=3, max_length=500)


class OptOutList(BaseModel):
    location_id: str
    count: int
    optouts: list[OptOutView]


class ReencryptResult(BaseModel):
    """`cast-ghl reencrypt`: documents encrypted again with the newest TOKEN_ENCRYPTION_KEY, and
    those no configured key decrypts (left as they are: re-install, or add the lost key back)."""

    installations: int
    location_settings: int
    undecryptable: int


class CastKeyRate(BaseModel):
    key: str  # the key's label (app/cast/keys.py: 12 hex digits of its identity), never the key
    rate: float  # msg/s now
    slowed: bool  # below the configured rate after a 429


class CastRates(BaseModel):
    configured: float  # CAST_RATE_PER_KEY
    keys: list[CastKeyRate]  # keys that drew a 429 at some point; the others send at `configured`
