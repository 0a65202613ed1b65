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
from app.ghl.scopes import DEFAULT_SCOPES

_FRAME_ORIGIN = re.compile(r"https?://(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*(:[0-9]{1,5})?")

DEFAULT_OPT_OUT_KEYWORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "HINTO")
DEFAULT_OPT_IN_KEYWORDS = ("START", "UNSTOP")


class Settings(BaseSettings):
    """Every setting, with the description `.env.example` and docs/configuration.md are made of.

    Both files are generated from these fields by `python3 -m scripts.gen_config`: a field's
    `description` is its documentation, `examples` are shown as examples, and json_schema_extra
    may open a section (`section`, `section_note`) or give the value `.env.example` sets
    (`env_example`; otherwise its line is commented out and shows the default).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    port: int = Field(
        3002,
        ge=1,
        le=65535,
        description="TCP port the HTTP server listens on. The Docker image EXPOSEs 3002 and its "
        "HEALTHCHECK follows this value.",
        json_schema_extra={"section": "Server"},
    )
    host: str = Field(
        "0.0.0.0",  # noqa: S104 - a container listens on all interfaces
        description="Interface to bind: all interfaces, as a container needs. Use 127.0.0.1 when "
        "running directly on a host behind a local reverse proxy.",
    )
    base_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://localhost:3002"),
        description="Public HTTPS origin of this service, as GHL and Cast reach it. **Required in "
        "production**: it builds the OAuth redirect URI (`BASE_URL/oauth/callback`) and the "
        "webhook URLs you paste into the GHL Marketplace app.",
        examples=["https://hl.cast.ph"],
        json_schema_extra={"env_example": "http://localhost:3002"},
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="DEBUG, INFO, WARNING or ERROR. Logs are JSON lines on stdout; phone numbers "
        "are masked and secrets are never logged.",
    )
    shutdown_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="Bound on the graceful shutdown: seconds to finish in-flight work after "
        "SIGTERM before exiting. Used twice (open HTTP requests, then queued sends), so keep the "
        "container stop grace period above twice this value (compose: `stop_grace_period: "
        "45s`; `docker stop -t 45`).",
    )
    api_docs: bool = Field(
        False,
        description="`true` serves the API documentation (`/docs`, `/redoc`, `/openapi.json`). "
        "It lists every route, the admin API included: leave it off on a public deployment.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=4096,
        description="Largest request body accepted, in bytes (1 MiB). A GHL webhook is a few "
        "KB. Larger bodies get 413 while they are read, on every route, before any signature, "
        "key or JSON check. Set the same limit in the reverse proxy; see [Request size "
        "limit](operations.md#request-size-limit).",
    )

    ghl_client_id: str = Field(
        min_length=1,
        description="OAuth client id of the Marketplace app (Marketplace > My Apps > Auth). "
        "**Required.** The part before the first `-` is the appId used to filter "
        "INSTALL/UNINSTALL webhooks. The placeholder in `.env.example` only lets the service "
        "start for a local trial.",
        json_schema_extra={
            "section": "GHL (GoHighLevel / LeadConnector) Marketplace app",
            "env_example": "000000000000000000000000-placeholder",
        },
    )
    ghl_client_secret: SecretStr = Field(
        description="OAuth client secret of the same app. **Required.** Never commit the real one.",
        json_schema_extra={"env_example": "replace-with-your-ghl-client-secret"},
    )
    ghl_webhook_public_key: str | None = Field(
        None,
        description="Public key(s) that verify webhook signatures. Optional: empty = GHL's "
        "published keys built into the code (Ed25519 for `X-GHL-Signature`, RSA for the legacy "
        "`X-WH-Signature`). Set it only to rotate or pin keys. Accepts one or more PEM blocks "
        "with real or escaped (`\\n`) newlines, or a bare base64 key body.",
        examples=[r"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA...\n-----END PUBLIC KEY-----"],
        json_schema_extra={"env_example": ""},
    )
    ghl_conversation_provider_id: str | None = Field(
        None,
        description="Id of the app's Conversation Provider (Marketplace app > Modules > "
        "Conversation Providers). Optional: a default SMS provider does not need it to add "
        "inbound messages. When set, it is sent as `conversationProviderId` on inbound "
        "messages.",
        examples=["6650f0c0ffee00000000abcd"],
        json_schema_extra={"env_example": ""},
    )
    ghl_api_url: AnyHttpUrl = Field(
        AnyHttpUrl("https://services.leadconnectorhq.com"),
        description="GHL REST API base URL (change it only to point tests at a fake GHL).",
    )
    ghl_marketplace_url: AnyHttpUrl = Field(
        AnyHttpUrl("https://marketplace.gohighlevel.com"),
        description='Host that serves the OAuth "choose location" page (the authorize host). '
        "White-label agencies: https://marketplace.leadconnectorhq.com",
    )
    ghl_redirect_uri: AnyHttpUrl | None = Field(
        None,
        description="OAuth redirect URI registered in the Marketplace app. Optional: unset = "
        "`BASE_URL/oauth/callback`. Must match the app's registered redirect URL exactly (an "
        "app registered for the Go bridge with `https://hl.cast.ph/oauth-callback` sets exactly "
        "that; both paths are served).",
        examples=["https://hl.cast.ph/oauth/callback"],
    )
    ghl_scopes: str = Field(
        DEFAULT_SCOPES,
        description="Space-separated OAuth scopes requested at install and checked in the "
        "grant. The default covers every GHL operation the bridge calls (agency installs "
        "included: `oauth.readonly`, `oauth.write`); see [the scopes](operations.md#scopes). "
        "`cast-ghl check-config` warns when one a feature needs is missing. Add "
        "`locations.readonly` only if location names are shown.",
    )
    ghl_api_timeout_seconds: float = Field(
        15.0, gt=0, description="Timeout in seconds of each GHL API call."
    )
    ghl_authorize_path: str = Field(
        "/v2/oauth/chooselocation",
        pattern=r"^/",
        description='Path of GHL\'s OAuth "choose location" page on `GHL_MARKETPLACE_URL` (the '
        "one GHL's current docs give). The older path, still used by some clients and by the "
        "original plan: `/oauth/chooselocation`.",
    )
    oauth_state_ttl_seconds: float = Field(
        900.0,
        gt=0,
        description="Seconds an install link (`GET /oauth/install`) stays usable: its signed "
        "`state` expires after this (15 min).",
    )
    ghl_app_webhook_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="App webhooks (INSTALL/UNINSTALL at `/webhooks/ghl/app`) whose `timestamp` "
        "is further than this many seconds from now (past or future) are refused as replays "
        "(401). One without `webhookId` (GHL's documented examples) is known as a repeat by "
        "the digest of its body for this long.",
    )

    cast_api_key: SecretStr = Field(
        description="The default Cast API key, sent as `X-API-Key`. **Required**; must start "
        "with `cast_` (live keys: `cast_` + 64 hex characters; sandbox keys: `cast_test_...`, "
        "which never reach a carrier and use no credits). The all-zero sandbox-shaped "
        "placeholder in `.env.example` only lets the service start; Cast rejects it.",
        json_schema_extra={
            "section": "Cast.ph SMS API",
            "env_example": "cast_test_" + "0" * 64,
        },
    )
    cast_api_url: AnyHttpUrl = Field(
        AnyHttpUrl("https://api.cast.ph"),
        description="Cast API base URL (tests point it at a fake Cast).",
    )
    cast_sender_id: str | None = Field(
        None,
        max_length=16,
        description="Approved sender ID to send from: a name of at most 11 characters (Cast's "
        "SMS channel, no replies) or a SIM number such as +639170000001 (Cast's SIM gateway, "
        "two-way: replies come back; the channel is read from Cast's sender-ID list). "
        "Optional: empty = Cast picks the account's first approved sender ID. Set it when the "
        "account has several. See "
        "[Channels](architecture.md#channels-one-way-sender-names-and-two-way-sim-numbers).",
        examples=["CAST"],
        json_schema_extra={"env_example": ""},
    )
    cast_api_timeout_seconds: float = Field(
        15.0, gt=0, description="Timeout in seconds of each Cast API call."
    )
    cast_rate_per_key: float = Field(
        10.0,
        gt=0,
        description="Pacing: messages per second per Cast API key, across all bridge processes. "
        "The default is Cast's default per-account rate: raise it only if Cast raised your "
        "account's limit.",
    )
    cast_ip_rate: float = Field(
        30.0,
        gt=0,
        description="Pacing: requests per second for ALL Cast calls from one egress IP address "
        "(Cast's per-source-IP limit is 30 req/s, burst 50; the bridge never uses the burst): "
        "sends, receipt reads, account reads, sender checks and the opt-out sync share it. Per "
        "process, or per CAST_EGRESS_GROUP when one is set.",
    )
    cast_egress_group: str = Field(
        "",
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Pacing: the name of the egress IP address this process shares with other "
        "bridge processes (replicas behind one NAT address): processes with the same name share "
        "one CAST_IP_RATE budget through the store. Empty: this process has its own address "
        "and its own budget.",
        examples=["nat-manila-1"],
    )
    ghl_requests_per_10s: int = Field(
        100,
        ge=10,
        description="Pacing of GHL calls: requests per 10 seconds per location, for the whole "
        "cluster (status updates, contact look-ups, replies, DND updates). GHL's limit per "
        "Marketplace app per location; the bridge uses 99 of them per 10.1 s. Change it "
        "only if GHL changes it. See [Pacing](architecture.md#pacing-cast-and-ghl-limits).",
    )
    cast_max_message_chars: int = Field(
        450,
        ge=1,
        le=10_000,
        description="Longest SMS body sent in one Cast call, in characters (the default is 3 "
        "GSM-7 parts; Cast allows up to 10,000); longer GHL messages are split at word "
        "boundaries into several Cast sends.",
    )
    low_credit_threshold: int = Field(
        500,
        ge=0,
        description="Credits (SMS parts) below which the settings page warns that the Cast "
        "account is running low. Each sub-account may set its own on its settings page; see [The "
        "Cast account on the settings page](architecture.md#the-cast-account-on-the-settings-"
        "page).",
    )

    send_deadline_seconds: float = Field(
        600.0,
        gt=0,
        description="How long, in seconds after GHL's webhook arrived, a message may keep "
        "retrying its Cast send (5xx, timeouts; Retry-After is honoured) before it is "
        "reported to GHL as failed. A 429 is waited out whatever the deadline (the pacing "
        "slows the key down instead).",
        json_schema_extra={"section": "Outbound delivery (GHL -> Cast -> handset)"},
    )
    status_deadline_seconds: float = Field(
        900.0,
        gt=0,
        description="How long, in seconds after the send finished, to keep retrying the status "
        'report to GHL (`PUT .../messages/{id}/status`: 403 "not downstreamed", 429, 5xx, '
        "timeouts) before giving up and logging an error.",
    )
    delivery_status_mode: Literal["carrier", "accepted"] = Field(
        "carrier",
        description='When to tell GHL "delivered". `carrier`: only once Cast\'s delivery '
        "receipt confirms it (polled from Cast; a carrier rejection is reported as failed with "
        "the carrier's reason). `accepted`: as soon as Cast accepts every part (no polling; the "
        "original plan's behaviour).",
    )
    dlr_first_poll_seconds: float = Field(
        15.0,
        gt=0,
        description="Seconds after Cast accepted a message before its first delivery-receipt "
        "poll (carrier mode only).",
    )
    dlr_max_poll_interval_seconds: float = Field(
        120.0,
        gt=0,
        description="Receipt polls back off (x2 each time) up to this many seconds between polls.",
    )
    dlr_logs_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="Carrier mode: seconds between two reads of a Cast key's message logs "
        "(`/sms/logs`, one request settles up to 500 receipts), across all bridge processes; "
        "a message waiting for its receipt looks again this often. See [Delivery receipts]"
        "(architecture.md#delivery-receipts).",
    )
    dlr_deadline_seconds: float = Field(
        1800.0,
        gt=0,
        description="Seconds after acceptance to keep polling; a message still unknown then is "
        "reported to GHL as delivered and counted as unconfirmed.",
    )
    worker_concurrency: int = Field(
        64,
        ge=1,
        le=1000,
        description="Maximum number of queued messages worked on at once by this process.",
    )
    lease_seconds: float = Field(
        15.0,
        ge=3,
        description="Seconds a worker holds a claimed queue item; if the process dies, another "
        "one takes the item over after this long (a live worker renews it every third of it).",
    )
    poll_interval_seconds: float = Field(
        0.2,
        gt=0,
        description="Seconds between queue polls of an idle worker (a webhook taken by the "
        "same process wakes it at once).",
    )

    inbound_routing_window_days: float = Field(
        30.0,
        gt=0,
        description="Days after a location's SMS to a number during which replies from that "
        "number may go to that location: when it is the only location that texted the number, "
        "or the reply's `to` is its sender ID while several did; else the reply waits as "
        "unroutable. Give each sub-account its own sender ID. See [Inbound "
        "SMS](architecture.md#inbound-sms-replies-into-ghl-conversations).",
        json_schema_extra={
            "section": "Inbound SMS (Cast SIM gateway -> GHL conversations)",
            "section_note": "Inbound SMS also needs INBOUND_API_KEY (Security).",
        },
    )
    inbound_routes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Where replies addressed to a receiving number or sender ID go, before any "
        "owner or recent sender is asked: a JSON object on one line mapping the receiving "
        "number (any PH format) or sender ID (exactly as Cast lists it), as the gateway sends it "
        "in `to`, to a GHL locationId. Optional: empty = no mapping; a reply no location owns "
        "or texted is then kept as unroutable (never dropped, never guessed).",
        examples=['{"CAST":"aBcD1234locationId","09171234567":"otherLocationId"}'],
    )
    inbound_deadline_seconds: float = Field(
        3600.0,
        gt=0,
        description="How long, in seconds, adding a received SMS to GHL is retried (429, 5xx, "
        "timeouts) before it is marked failed; it stays stored either way.",
    )

    opt_out_keywords: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_OPT_OUT_KEYWORDS,
        description="An inbound SMS whose whole text (trimmed, any case, trailing punctuation "
        "ignored) is one of these words opts its sender out: the contact's SMS DND is set in "
        "GHL and the bridge sends that location nothing more to the number. Comma-separated; "
        "empty turns keyword opt-outs off.",
        json_schema_extra={
            "section": "Opt-outs (STOP)",
            "section_note": "See [Opt-outs](architecture.md#opt-outs-stop).",
        },
    )
    opt_in_keywords: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_OPT_IN_KEYWORDS,
        description="The words that opt the sender back in (DND cleared, sending allowed "
        "again). Comma-separated; none may also be an opt-out keyword.",
    )
    cast_optout_sync_seconds: float = Field(
        300.0,
        ge=0,
        description="Every this many seconds one bridge process reads each Cast key's "
        "unsubscribe list (`GET /api/v1/account/unsubscribed`) and opts those numbers out in "
        "the locations sending with that key and sender ID. 0 turns the sync off.",
    )

    mongo_uri: SecretStr | None = Field(
        None,
        description="MongoDB connection string. Optional: empty = embedded SQLite file under "
        "`DATA_DIR` (fine for a trial or one small instance). With MongoDB, "
        "`TOKEN_ENCRYPTION_KEY` becomes required. docker-compose.yaml sets it for the bridge "
        "service (overriding `.env`) to the example below.",
        examples=["mongodb://mongo:27017/cast_ghl"],
        json_schema_extra={"section": "Storage", "env_example": ""},
    )
    mongo_db: str | None = Field(
        None,
        description="MongoDB database name. Optional: default = the database in `MONGO_URI`'s "
        "path, else `cast_ghl`.",
        examples=["cast_ghl"],
    )
    data_dir: Path = Field(
        Path("./data"),
        description="Directory for the SQLite database and its generated token key (embedded "
        "mode only). The Docker image sets /data (a volume): keep it commented out when using "
        "Docker, or the value in `.env` would override the image's /data.",
    )

    inbound_api_key: SecretStr | None = Field(
        None,
        description="Shared secret the Cast inbound gateway sends as `X-API-Key` to `POST "
        "/webhooks/cast/inbound`. Optional, but inbound SMS (replies into GHL conversations) "
        "needs it; give the same value to Cast. Unset: the inbound endpoint answers 503. Use a "
        "long random value, e.g. from `python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`.",
        json_schema_extra={"section": "Security"},
    )
    token_encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key that encrypts OAuth tokens, the per-location Cast API keys "
        "saved on the settings page, and the Cast key kept with each message, at rest; the "
        "secret of the Cast keys' identities is derived from it ([Key identity](architecture.md"
        "#key-identity)). **Required with `MONGO_URI`** (so also with "
        "docker-compose.yaml); optional with SQLite, where an empty value makes the service "
        "generate a key once and keep it in `DATA_DIR/token-encryption.key`. Generate one with "
        "`python3 -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'`. Back it up: losing it makes every stored "
        "token unreadable (re-install needed). Rotation: a comma-separated list, newest first "
        "(the first encrypts, all decrypt), e.g. `<new>,<old>`; then `cast-ghl reencrypt` and "
        "drop `<old>`; see [Rotating or losing the encryption key](operations.md#rotating-or-"
        "losing-the-encryption-key).",
        json_schema_extra={"env_example": ""},
    )

    admin_api_key: SecretStr | None = Field(
        None,
        description="Bearer key of the admin API (`/api/admin/...`: installations, message "
        "history, re-queue, unroutable replies, `PUT /api/admin/locations/{locationId}/"
        "sender-id`). Optional: empty = the admin API is off (every admin route answers 404). "
        "At least 16 characters and different from `INBOUND_API_KEY` (the Go bridge used "
        "`INBOUND_API_KEY` for its admin call; that no longer works). Generate with `python3 -c "
        "'import secrets; print(secrets.token_urlsafe(32))'`.",
        json_schema_extra={"section": "Operations: the admin API and GET /metrics"},
    )
    metrics_bearer_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus must send (`Authorization: Bearer ...`) to scrape "
        "`GET /metrics`. Optional: empty = `/metrics` is open (keep it off the public internet "
        "then, e.g. the proxy does not forward it).",
    )

    ghl_app_sso_key: SecretStr | None = Field(
        None,
        description="The Marketplace app's Shared Secret (its SSO key, generated in the app's "
        "auth settings). It decrypts the user context GHL gives the custom page "
        "`{BASE_URL}/settings`. Optional, but the settings page needs it: empty = the page "
        'answers 503 "not configured". Never commit it.',
        json_schema_extra={
            "section": "Per-location settings page (a custom page inside GHL)",
            "section_note": "Users are identified by GHL's SSO.",
        },
    )
    settings_session_seconds: float = Field(
        1800.0,
        gt=0,
        description="Seconds a settings-page sign-in stays valid before the page must be reloaded.",
    )
    settings_frame_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Origins that may frame the settings page besides GHL's own app domains "
        "(`https://app.gohighlevel.com`, `https://*.gohighlevel.com`, "
        "`https://app.leadconnectorhq.com`, `https://*.leadconnectorhq.com`): agencies' "
        "white-label app domains, comma-separated, each `https://host[:port]` or "
        "`https://*.domain`. They go into the page's CSP frame-ancestors, and the page accepts "
        "GHL's user context only from its parent window on one of them. Optional; empty = GHL's "
        "domains only.",
        examples=["https://app.myagency.com,https://*.white-label.example"],
    )

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
                "must be at least 16 characters (python3 -c "
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
                    f"{which} must be urlsafe base64 of 32 random bytes (python3 -c 'from "
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


def env_example(field: str) -> str | None:
    """The value `.env.example` gives the setting `field` (None: its line is commented out)."""
    extra = Settings.model_fields[field].json_schema_extra
    return extra.get("env_example") if isinstance(extra, dict) else None
