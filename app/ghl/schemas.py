from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ProviderOutboundMessage(BaseModel):
    """GHL's `ProviderOutboundMessage` webhook (Delivery URL)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    message_id: str = Field(alias="messageId", min_length=1)
    location_id: str = Field(alias="locationId", min_length=1)
    phone: str = Field(min_length=1)
    message: str
    type: str = "SMS"
    contact_id: str | None = Field(None, alias="contactId")
    user_id: str | None = Field(None, alias="userId")
    attachments: list[str] = Field(default_factory=list)


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
