import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

# The Cast channel a sender ID is approved for (cast-api.md §2): `sms` is the SMPP route (usually
# an alphanumeric brand name nobody can reply to), `sim` is Cast's SIM gateway (a mobile number).
Channel = Literal["sms", "sim"]
CHANNELS: tuple[Channel, ...] = ("sms", "sim")

# cast-api.md §1: `cast_` + 64 hex characters; sandbox keys begin `cast_test_`.
_CAST_KEY = re.compile(r"cast_(?:test_)?[0-9a-fA-F]{64}")
CAST_KEY_SHAPE = "cast_ (or cast_test_) followed by 64 hex characters"


def checked_cast_key(value: str) -> str:
    """`value` when it has the shape of a Cast API key, else ValueError saying the shape
    (never echoing the value: it is a secret)."""
    if _CAST_KEY.fullmatch(value) is None:
        raise ValueError(f"must be a Cast API key: {CAST_KEY_SHAPE}, nothing else")
    return value


SENDER_ID_MAX = 11
_SENDER_ID = re.compile(r"[A-Za-z0-9 ]+")
_SIM_NUMBER = re.compile(r"\+?[0-9]{7,15}")  # a SIM gateway sender is a mobile number

ChannelSource = Literal["setting", "cast", "assumed"]


def checked_sender_id(value: str | None) -> str | None:
    """A sender ID as Cast approves them (a name of ≤ 11 letters, digits, spaces, or a SIM
    mobile number such as +639171234567); empty means none."""
    if not value:
        return None
    number = re.sub(r"[\s()-]", "", value)
    if _SIM_NUMBER.fullmatch(number):
        return number
    if len(value) > SENDER_ID_MAX:
        raise ValueError(f"at most {SENDER_ID_MAX} characters (or a mobile number)")
    if not _SENDER_ID.fullmatch(value):
        raise ValueError("use letters, digits and spaces only (as approved by Cast)")
    return value


def checked_channel(value: str | None) -> Channel | None:
    """An explicit channel (`sms` or `sim`); empty means "as Cast lists the sender ID"."""
    if not value:
        return None
    if value not in ("sms", "sim"):
        raise ValueError("choose sms, sim, or leave it empty (as Cast lists the sender ID)")
    return value  # type: ignore[return-value]


class SendRequest(BaseModel):
    to: str
    message: str
    sender_id: str | None = None


class SendResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool
    message_id: str | None = None
    parts: int = 1
    replayed: bool = False


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool = False
    error: str | None = None
    error_code: str | None = None


class StatusResult(BaseModel):
    """`GET /api/v1/sms/status/{message_id}`."""

    model_config = ConfigDict(extra="ignore")

    success: bool = True
    message_id: str | None = None
    status: str = "unknown"
    dlr_status: str | None = None
    error_message: str | None = None
    sent_at: str | None = None
    delivered_at: str | None = None


class Unsubscribed(BaseModel):
    """One entry of `GET /api/v1/account/unsubscribed`."""

    model_config = ConfigDict(extra="ignore")

    phone: str
    sender_id: str | None = None
    unsubscribed_at: str | None = None


class UnsubscribedList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool = True
    data: list[Unsubscribed] = []


class SenderId(BaseModel):
    """One approved sender ID of an account (`GET /api/v1/account/sender-ids`)."""

    model_config = ConfigDict(extra="ignore")

    sender_id: str
    label: str | None = None
    channel: str  # `sms` or `sim` today; kept as text so a new channel does not break reading

    @property
    def known_channel(self) -> Channel | None:
        return self.channel if self.channel in CHANNELS else None  # type: ignore[return-value]


class SharedSenderList(BaseModel):
    """A key's sender-ID list as one process read it, kept for every process (when: wall time)."""

    fetched_at: float
    senders: list[SenderId]


class SenderIdList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool = True
    sender_ids: list[SenderId]


class Profile(BaseModel):
    """`GET /api/v1/account/profile` (the fields the settings page shows)."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    credits: int | None = None
    billing_type: str | None = None  # "topup" (prepaid) or "postpaid"
    allowed_channels: list[str] = []
    is_active: bool = True


class UsageDay(BaseModel):
    model_config = ConfigDict(extra="ignore")

    date: str  # YYYY-MM-DD
    total: int = 0
    sent: int = 0
    failed: int = 0
    parts: int = 0


class Usage(BaseModel):
    """`GET /api/v1/account/usage`: totals and one row per day (Cast lists them newest first)."""

    model_config = ConfigDict(extra="ignore")

    total_sent: int = 0
    total_failed: int = 0
    total_parts: int = 0
    daily: list[UsageDay] = []


class KeyState(BaseModel):
    """Why a Cast key cannot send (Cast refused the key or its account): Cast's code and the
    words a GHL user reads."""

    code: str
    reason: str
    at: float


class SmsLog(BaseModel):
    """One entry of `GET /api/v1/sms/logs` (cast-api.md §5.15). `status` is the submission's
    (`sent` or `failed`); the carrier's receipt, once known, is `dlr_status`."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str = "sent"
    dlr_status: str | None = None
    delivered_at: str | None = None
    created_at: str | None = None
    error_message: str | None = None


class SmsLogs(BaseModel):
    """A page of an account's message logs, newest first."""

    model_config = ConfigDict(extra="ignore")

    success: bool = True
    count: int | None = None
    logs: list[SmsLog] = []
