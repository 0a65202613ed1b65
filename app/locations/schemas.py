"""Per-location Cast settings, the form that changes them, and what the settings page shows."""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.cast.schemas import (
    Channel,
    ChannelSource,
    KeyState,
    SenderId,
    Usage,
    checked_cast_key,
    checked_sender_id,
)
from app.locations.chart import Chart


def mask_key(api_key: str | None) -> str | None:
    """`cast_…abcd`: enough to recognise a key, never enough to use it."""
    if not api_key:
        return None
    return f"cast_…{api_key[-4:]}" if len(api_key) >= 12 else "cast_…"


class LocationSettings(BaseModel):
    """One location's own Cast account (the key is decrypted in memory only)."""

    location_id: str
    cast_api_key: str | None = None
    sender_id: str | None = None
    # The sender's Cast channel when set by hand (where Cast cannot be asked); None: as Cast's
    # sender-ID list says.
    channel: Channel | None = None
    low_credit_threshold: int | None = None  # None: LOW_CREDIT_THRESHOLD
    enabled: bool = True
    # Default-account senders the operator assigned to this location (admin API, CLI): the only
    # ones it may send as without its own key.
    assigned_senders: list[str] = Field(default_factory=list)
    # Cast listed `sender_id` for the key when it was saved (or since): until then the location
    # sends with it but is not its owner for routing replies.
    sender_checked: bool = True
    updated_at: float
    updated_by: str | None = None
    key_unreadable: bool = False  # stored, but TOKEN_ENCRYPTION_KEY cannot decrypt it (not stored)


class SettingsForm(BaseModel):
    """The settings form. A blank key keeps the stored one; `remove_api_key` deletes it."""

    model_config = ConfigDict(str_strip_whitespace=True)

    sender_id: str | None = None
    channel: Channel | None = None
    low_credit_threshold: int | None = Field(None, ge=0, le=100_000_000)
    api_key: str | None = Field(None, max_length=200)
    enabled: bool = False
    remove_api_key: bool = False

    @field_validator("sender_id", "api_key", "channel", "low_credit_threshold", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("sender_id")
    @classmethod
    def _sender_id_shape(cls, value: str | None) -> str | None:
        return checked_sender_id(value)

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: str | None) -> str | None:
        return None if value is None else checked_cast_key(value)


class SmsTestForm(BaseModel):
    """ "Send test SMS": the number typed, and a one-time nonce so a double submit sends once."""

    model_config = ConfigDict(str_strip_whitespace=True)

    phone: str = Field(min_length=1, max_length=32)
    nonce: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Totals:
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    capped: bool = False  # more messages than were counted

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.pending


@dataclass(frozen=True, slots=True)
class Connection:
    state: Literal["connected", "needs_reauth", "not_installed"]
    detail: str | None = None
    via_agency: bool = False


@dataclass(frozen=True, slots=True)
class AccountPanel:
    """The Cast account the location sends with, as Cast reports it (None: not read)."""

    credits: int | None
    billing_type: str | None
    threshold: int
    threshold_is_own: bool
    senders: list[SenderId] | None
    usage: Usage | None
    chart: Chart | None  # drawn as inline SVG by the template
    state: KeyState | None  # Cast refuses the key: the page shows it broken
    problems: list[str]

    @property
    def low(self) -> bool:
        return self.credits is not None and self.credits < self.threshold


@dataclass(frozen=True, slots=True)
class SettingsView:
    """Everything the page shows; the key only masked."""

    location_id: str
    user_name: str
    can_edit: bool  # a GHL admin; other users see the page read-only
    connection: Connection
    sender_id: str | None
    masked_key: str | None
    key_unreadable: bool
    enabled: bool
    uses_own_account: bool
    effective_sender_id: str | None
    channel: Channel  # the channel the next message goes out through
    channel_source: ChannelSource
    channel_setting: Channel | None  # the explicit per-location choice, if any
    updated_at: float | None
    cast: AccountPanel | None  # only for the location's own key: never the operator's account
    sender_choices: list[str]  # what the sender field offers: assigned, or its own key's approved
    assigned_senders: list[str]
    last_24h: Totals
    last_7d: Totals
    opted_out: int = 0  # recipients on this location's opt-out list
    location_name: str | None = None  # as GHL names the sub-account, once known
