from typing import Literal

from pydantic import BaseModel, Field


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


class InstallationSummary(BaseModel):
    """What may be shown about an installation: never a token."""

    id: str
    kind: str
    location_id: str | None
    company_id: str | None
    scopes: list[str]
    expires_at: float
    needs_reauth: bool
    reauth_reason: str | None
