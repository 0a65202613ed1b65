"""The one Settings class, validated at start-up (environment variables and `.env`)."""

import base64
import binascii
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.cast.schemas import checked_cast_key, checked_sender_id

_FRAME_ORIGIN = re.compile(r"https?://(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:[0-9]{1,5})?")
DEFAULT_SCOPES = (
    "conversations/message.write conversations/message.readonly conversations.write "
    "conversations.readonly contacts.readonly contacts.write"
)

DEFAULT_OPT_OUT_KEYWORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "HINTO")
DEFAULT_OPT_IN_KEYWORDS = ("START", "UNSTOP")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Server
    port: int = Field(3002, ge=1, le=65535)
    host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    base_url: AnyHttpUrl = AnyHttpUrl("http://localhost:3002")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_timeout_seconds: float = Field(20.0, gt=0)
    api_docs: bool = False
    max_body_bytes: int = Field(1_048_576, ge=4096, description="larger request bodies get 413")

    # GHL
    ghl_client_id: str = Field(min_length=1)
    ghl_client_secret: SecretStr
    ghl_webhook_public_key: str | None = None
    ghl_conversation_provider_id: str | None = None
    ghl_api_url: AnyHttpUrl = AnyHttpUrl("https://services.leadconnectorhq.com")
    ghl_marketplace_url: AnyHttpUrl = AnyHttpUrl("https://marketplace.gohighlevel.com")
    ghl_redirect_uri: AnyHttpUrl | None = None
    ghl_scopes: str = DEFAULT_SCOPES
    ghl_api_timeout_seconds: float = Field(15.0, gt=0)
    ghl_authorize_path: str = Field("/v2/oauth/chooselocation", pattern=r"^/")
    oauth_state_ttl_seconds: float = Field(900.0, gt=0)
    ghl_app_webhook_max_age_seconds: float = Field(300.0, gt=0)

    # Cast.ph
    cast_api_key: SecretStr
    cast_api_url: AnyHttpUrl = AnyHttpUrl("https://api.cast.ph")
    cast_sender_id: str | None = Field(None, max_length=16)  # a name (≤ 11) or a SIM number
    cast_api_timeout_seconds: float = Field(15.0, gt=0)
    cast_rate_per_key: float = Field(10.0, gt=0, description="messages/s per Cast API key")
    cast_ip_rate: float = Field(30.0, gt=0, description="requests/s for all Cast calls")
    ghl_requests_per_10s: int = Field(
        100, ge=10, description="GHL requests per 10 s per location (GHL's limit per app)"
    )
    cast_max_message_chars: int = Field(450, ge=1, le=10_000)
    # Below this many credits (SMS parts) the settings page warns; a location may set its own.
    low_credit_threshold: int = Field(500, ge=0)

    # Outbound delivery
    send_deadline_seconds: float = Field(600.0, gt=0)
    status_deadline_seconds: float = Field(900.0, gt=0)
    delivery_status_mode: Literal["carrier", "accepted"] = "carrier"
    dlr_first_poll_seconds: float = Field(15.0, gt=0)
    dlr_max_poll_interval_seconds: float = Field(120.0, gt=0)
    dlr_deadline_seconds: float = Field(1800.0, gt=0)
    worker_concurrency: int = Field(64, ge=1, le=1000)
    lease_seconds: float = Field(15.0, ge=3)
    poll_interval_seconds: float = Field(0.2, gt=0)

    # Inbound SMS (Cast's SIM gateway -> GHL)
    inbound_routing_window_days: float = Field(30.0, gt=0)
    inbound_routes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    inbound_deadline_seconds: float = Field(3600.0, gt=0)

    # Opt-outs (STOP): keywords of an inbound SMS, and Cast's unsubscribe list
    opt_out_keywords: Annotated[tuple[str, ...], NoDecode] = DEFAULT_OPT_OUT_KEYWORDS
    opt_in_keywords: Annotated[tuple[str, ...], NoDecode] = DEFAULT_OPT_IN_KEYWORDS
    cast_optout_sync_seconds: float = Field(300.0, ge=0)

    # Storage
    mongo_uri: SecretStr | None = None
    mongo_db: str | None = None
    data_dir: Path = Path("./data")

    # Security
    inbound_api_key: SecretStr | None = None
    token_encryption_key: SecretStr | None = None

    # Operations: the admin API (/api/admin/...) and GET /metrics
    admin_api_key: SecretStr | None = None
    metrics_bearer_token: SecretStr | None = None

    # Per-location settings page (a GHL custom page; users identified by GHL's SSO)
    ghl_app_sso_key: SecretStr | None = None
    settings_session_seconds: float = Field(1800.0, gt=0)
    # Origins besides GHL's own that may frame the page (agencies' white-label app domains)
    settings_frame_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("cast_api_key")
    @classmethod
    def _cast_key_shape(cls, value: SecretStr) -> SecretStr:
        checked_cast_key(value.get_secret_value())
        return value

    @field_validator(
        "inbound_api_key", "ghl_app_sso_key", "admin_api_key", "metrics_bearer_token", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_api_key")
    @classmethod
    def _admin_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("inbound_routes", mode="before")
    @classmethod
    def _routes_json(cls, value: object) -> object:
        """JSON object: receiving number or sender ID -> GHL locationId."""
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(
                    'must be a JSON object, e.g. {"CAST": "locationId", "09171234567": "other"}'
                ) from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip()
            for k, v in value.items()
        ):
            raise ValueError("must map non-empty numbers or sender IDs to non-empty locationIds")
        return {k.strip(): v.strip() for k, v in value.items()}

    @field_validator("opt_out_keywords", "opt_in_keywords", mode="before")
    @classmethod
    def _keyword_list(cls, value: object) -> object:
        """Comma-separated words (any case); empty turns the keywords off."""
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list | tuple):
            raise ValueError("must be comma-separated words, e.g. STOP,UNSUBSCRIBE")
        words = tuple(dict.fromkeys(str(word).strip().upper() for word in value))
        words = tuple(word for word in words if word)
        if any(len(word.split()) != 1 for word in words):
            raise ValueError("each keyword must be one word, e.g. STOP,UNSUBSCRIBE")
        return words

    @model_validator(mode="after")
    def _keywords_do_not_overlap(self) -> "Settings":
        both = sorted(set(self.opt_out_keywords) & set(self.opt_in_keywords))
        if both:
            raise ValueError(
                f"OPT_IN_KEYWORDS: {', '.join(both)} is also in OPT_OUT_KEYWORDS (a word must "
                "mean one thing)"
            )
        return self

    @field_validator("settings_frame_origins", mode="before")
    @classmethod
    def _frame_origins(cls, value: object) -> object:
        """Comma- or space-separated origins: https://host[:port], or https://*.domain."""
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if not isinstance(value, list | tuple):
            return value
        origins = []
        for origin in value:
            origin = str(origin).strip().rstrip("/").lower()
            if not _FRAME_ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: use https://app.example.com or "
                    "https://*.example.com, separated by commas"
                )
            origins.append(origin)
        return tuple(dict.fromkeys(origins))

    @field_validator("mongo_uri")
    @classmethod
    def _mongo_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("token_encryption_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """One Fernet key, or a comma-separated list newest first (rotation)."""
        if value is None or not value.get_secret_value().strip():
            return None
        keys = _key_list(value.get_secret_value())
        for number, key in enumerate(keys, start=1):
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                which = f"key {number} of {len(keys)}" if len(keys) > 1 else "the key"
                raise ValueError(
                    f"{which} must be urlsafe base64 of 32 random bytes (python -c 'from "
                    "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'); "
                    "several keys: comma-separated, newest first"
                )
        return value

    @field_validator("cast_sender_id", "ghl_webhook_public_key", "ghl_conversation_provider_id")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("cast_sender_id")
    @classmethod
    def _sender_id_shape(cls, value: str | None) -> str | None:
        return checked_sender_id(value)

    @model_validator(mode="after")
    def _admin_key_is_its_own(self) -> "Settings":
        admin, inbound = self.admin_api_key, self.inbound_api_key
        if admin and inbound and admin.get_secret_value() == inbound.get_secret_value():
            raise ValueError(
                "ADMIN_API_KEY: must differ from INBOUND_API_KEY (the gateway's key must not "
                "administer the bridge)"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> "Settings":
        if self.mongo_uri is not None and self.token_encryption_key is None:
            raise ValueError(
                "TOKEN_ENCRYPTION_KEY: required when MONGO_URI is set "
                "(tokens are encrypted at rest)"
            )
        return self

    @cached_property
    def public_base_url(self) -> str:
        return str(self.base_url).rstrip("/")

    @cached_property
    def redirect_uri(self) -> str:
        if self.ghl_redirect_uri is not None:
            return str(self.ghl_redirect_uri)
        return f"{self.public_base_url}/oauth/callback"

    @property
    def app_id(self) -> str:
        """GHL's appId: the part of the client id before the first '-'."""
        return self.ghl_client_id.split("-", 1)[0]

    @property
    def scope_list(self) -> list[str]:
        return self.ghl_scopes.split()

    @property
    def authorize_url(self) -> str:
        return str(self.ghl_marketplace_url).rstrip("/") + self.ghl_authorize_path

    @property
    def encryption_keys(self) -> list[str]:
        """TOKEN_ENCRYPTION_KEY as a list, newest first (empty when unset)."""
        if self.token_encryption_key is None:
            return []
        return _key_list(self.token_encryption_key.get_secret_value())

    @property
    def uses_mongo(self) -> bool:
        return self.mongo_uri is not None


def _key_list(text: str) -> list[str]:
    return [key.strip() for key in text.split(",") if key.strip()]


class SettingsError(Exception):
    """Raised with one readable line per bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{variable}: {message}" if variable else message)
        raise SettingsError(lines) from None
