from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.ghl.schemas import TokenResponse
from app.timestamps import UtcTime


def location_key(location_id: str) -> str:
    return f"location:{location_id}"


def company_key(company_id: str) -> str:
    return f"company:{company_id}"


class Installation(BaseModel):
    """One authorised location (or agency company) with its tokens, decrypted in memory only."""

    id: str
    kind: Literal["location", "company"]
    location_id: str | None = None
    company_id: str | None = None
    access_token: str
    refresh_token: str | None = None
    expires_at: float
    scopes: list[str] = Field(default_factory=list)
    user_type: str | None = None
    needs_reauth: bool = False
    reauth_reason: str | None = None
    installed_at: float
    updated_at: float
    # How a location token was obtained: "oauth" (its own install) or "company" (agency token).
    source: Literal["oauth", "company"] = "oauth"
    # Company installations: the locations whose tokens were obtained through it.
    location_ids: list[str] = Field(default_factory=list)

    @classmethod
    def from_token(
        cls,
        pair: TokenResponse,
        now: float,
        *,
        location_id: str | None = None,
        company_id: str | None = None,
        **fields: Any,
    ) -> "Installation":
        """What a token answer installs: the location `location_id`, or without it the company
        `company_id`; `fields` set the rest (`installed_at` is `now` unless given)."""
        company_id = company_id if company_id is not None else pair.company_id
        if location_id is not None:
            ident, kind = location_key(location_id), "location"
        else:
            assert company_id is not None, "a company installation needs its company id"
            ident, kind = company_key(company_id), "company"
        return cls(
            **{
                "id": ident,
                "kind": kind,
                "location_id": location_id,
                "company_id": company_id,
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_at": now + pair.expires_in,
                "scopes": pair.scope.split(),
                "installed_at": now,
                "updated_at": now,
                **fields,
            }
        )


class InstallationSummary(BaseModel):
    """What may be shown about an installation: never a token."""

    id: str
    kind: str
    location_id: str | None
    location_name: str | None = None  # as GHL last gave it (app/overview/repository.py)
    company_id: str | None
    scopes: list[str]
    expires_at: UtcTime
    needs_reauth: bool
    reauth_reason: str | None
    source: str = "oauth"
    installed_at: UtcTime | None = None
    updated_at: UtcTime | None = None
    location_count: int = 0  # company installations: locations with tokens through it


class AppWebhook(BaseModel):
    """An event at the app's Webhook URL: INSTALL, UNINSTALL, ContactDndUpdate, or any other
    type GHL sends (ignored). GHL's documented examples carry neither `webhookId` nor
    `timestamp`, and its other events no `appId`: all three are optional (the signature
    decides)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, str_strip_whitespace=True)

    type: str = Field(min_length=1)
    app_id: str | None = Field(None, alias="appId")
    webhook_id: str | None = Field(None, alias="webhookId", min_length=1)
    timestamp: str | float | None = None
    install_type: str | None = Field(None, alias="installType")
    location_id: str | None = Field(None, alias="locationId")
    company_id: str | None = Field(None, alias="companyId")
    user_id: str | None = Field(None, alias="userId")
    version_id: str | None = Field(None, alias="versionId")
    location_ids: list[str] = Field(default_factory=list, alias="locationIds")  # a bulk INSTALL

    @field_validator("location_ids", mode="before")
    @classmethod
    def _no_locations(cls, value: object) -> object:
        return [] if value is None else value

    @property
    def locations(self) -> list[str]:
        """Every location the event names (`locationId` and a bulk install's `locationIds`)."""
        named = [self.location_id, *self.location_ids]
        return list(dict.fromkeys(loc.strip() for loc in named if loc and loc.strip()))


class InstallResult(BaseModel):
    """What the callback page reports: ids and scopes, never a token."""

    kind: Literal["location", "company"]
    location_id: str | None = None
    company_id: str | None = None
    locations: list[str] = Field(default_factory=list)
    failed_locations: list[str] = Field(default_factory=list)
    missing_scopes: list[str] = Field(default_factory=list)
    names: dict[str, str] = Field(default_factory=dict)  # sub-account names GHL gave, by id
