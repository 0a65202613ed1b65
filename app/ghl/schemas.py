from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The keys an attachment given as an object may carry its link under (GHL documents a list of
# URLs; objects are taken as well, by their first link).
_ATTACHMENT_URL_KEYS = ("url", "link", "href", "fileUrl")


def attachment_url(item: object) -> str | None:
    """An attachment's link: the item itself (a URL string) or an object's `url`."""
    if isinstance(item, str):
        return item.strip() or None
    if isinstance(item, dict):
        for key in _ATTACHMENT_URL_KEYS:
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


class ProviderOutboundMessage(BaseModel):
    """GHL's `ProviderOutboundMessage` webhook (Delivery URL).

    Only the ids are required: a message with attachments only (no `message`), `attachments:
    null`, attachments as objects, or an Email (no `phone`) is accepted, so that GHL always gets
    a final status (a 4xx would leave it pending: GHL does not redeliver one)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    message_id: str = Field(alias="messageId", min_length=1)
    location_id: str = Field(alias="locationId", min_length=1)
    phone: str = ""
    message: str = ""
    type: str = "SMS"
    contact_id: str | None = Field(None, alias="contactId")
    user_id: str | None = Field(None, alias="userId")
    attachments: list[str] = Field(default_factory=list)

    @field_validator("phone", "message", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachment_links(cls, value: object) -> object:
        """Links only: null is none, an object gives its url, an item without a link is
        dropped (it cannot be sent as text)."""
        if value is None:
            return []
        if not isinstance(value, list):
            return value  # refused by the type: not a list
        return [url for url in map(attachment_url, value) if url is not None]


class StatusError(BaseModel):
    code: str
    type: Literal["saas"] = "saas"
    message: str


class StatusUpdate(BaseModel):
    status: Literal["delivered", "failed", "pending", "read"]
    error: StatusError | None = None


class TokenResponse(BaseModel):
    """`POST /oauth/token` and `POST /oauth/locationToken` answers."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    access_token: str
    refresh_token: str | None = None
    expires_in: int = 86399
    scope: str = ""
    user_type: str | None = Field(None, alias="userType")
    location_id: str | None = Field(None, alias="locationId")
    company_id: str | None = Field(None, alias="companyId")
    user_id: str | None = Field(None, alias="userId")
    is_bulk_installation: bool = Field(False, alias="isBulkInstallation")
    approved_locations: list[str] = Field(default_factory=list, alias="approvedLocations")


class InboundMessage(BaseModel):
    """`POST /conversations/messages/inbound` (`ProcessMessageBodyDto`).

    `conversationProviderId`, required by the definition, is documented as not needed for a
    default SMS provider (docs/ConversationProviders.md): sent only when configured.
    `direction` is typed `object` in the definition, GHL's own slip: its docs and examples send
    the string "inbound", as here (tests/contract/ lists it among the known exceptions)."""

    type: Literal["SMS"] = "SMS"
    message: str
    conversation_id: str = Field(serialization_alias="conversationId", min_length=1)
    contact_id: str = Field(serialization_alias="contactId")
    conversation_provider_id: str | None = Field(None, serialization_alias="conversationProviderId")
    alt_id: str | None = Field(None, serialization_alias="altId")
    date: str | None = None
    direction: Literal["inbound"] = "inbound"


JsonDict = dict[str, Any]


class ContactDndUpdate(BaseModel):
    """GHL's `ContactDndUpdate` event (app Webhook URL): a contact's DND changed in GHL."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, str_strip_whitespace=True)

    location_id: str = Field(alias="locationId", min_length=1)
    contact_id: str | None = Field(None, alias="id")
    phone: str | None = None
    dnd: bool | None = None
    dnd_settings: dict[str, Any] | None = Field(None, alias="dndSettings")

    def _sms(self) -> dict[str, Any]:
        sms = (self.dnd_settings or {}).get("SMS")
        return sms if isinstance(sms, dict) else {}

    @property
    def sms_blocked(self) -> bool | None:
        """SMS DND on (`active`/`permanent`), off (`inactive`), or None when the event does not
        say; without an SMS entry, the contact-wide `dnd` decides."""
        status = self._sms().get("status")
        if isinstance(status, str) and status.strip():
            return status.strip().lower() in ("active", "permanent")
        return self.dnd

    @property
    def sms_message(self) -> str:
        message = self._sms().get("message")
        return message if isinstance(message, str) else ""
