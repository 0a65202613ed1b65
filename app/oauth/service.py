"""Installing the app: the install link, the OAuth callback, agency installs, INSTALL/UNINSTALL."""

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError

from app.config import Settings
from app.ghl.client import GHLClient, GHLError
from app.ghl.schemas import ContactDndUpdate, TokenResponse
from app.ghl.scopes import missing_from_grant
from app.kit.errors import ApiError, validation_error
from app.metrics import Counters
from app.oauth.repository import InstallationRepository, company_key, location_key
from app.oauth.schemas import AppWebhook, Installation, InstallResult
from app.oauth.state import StateError, StateSigner
from app.oauth.tokens import Refusal, TokenService, TokenUnavailable, token_refusal
from app.optouts.service import OptOutService
from app.overview.repository import LocationNames

log = logging.getLogger(__name__)

LOCATION_TOKEN_CONCURRENCY = 4
CAS_ATTEMPTS = 10
# Applied as the state they carry, so a repeat is harmless, and a state set again after a change
# gives the same body: never taken for a repeat by their body's digest.
STATE_EVENTS = frozenset({"ContactDndUpdate"})
MAX_AGENCIES_ASKED = 20  # an INSTALL naming no agency: agencies asked whether it is theirs


class InstallError(Exception):
    """The install cannot be completed; shown to the installing user as an HTML page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def parse_timestamp(value: str | float) -> float:
    """GHL's webhook `timestamp`: ISO-8601 (`2025-01-01T10:00:00.000Z`) or epoch (s or ms)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # GHL sends UTC
            return parsed.timestamp()
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError("timestamp is not a finite number")
    return number / 1000 if number > 1e11 else number


class OAuthService:
    def __init__(
        self,
        settings: Settings,
        repository: InstallationRepository,
        tokens: TokenService,
        ghl: GHLClient,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        *,
        optouts: OptOutService,
        names: LocationNames,
    ) -> None:
        self._names = names  # sub-account names GHL lists, kept for every view
        self._settings = settings
        self._optouts = optouts  # ContactDndUpdate
        self._repo = repository
        self._tokens = tokens
        self._ghl = ghl
        self._counters = counters
        self._clock = clock
        self._signer = StateSigner(
            settings.ghl_client_secret.get_secret_value(), settings.oauth_state_ttl_seconds
        )

    # The install link ---------------------------------------------------------------------
    def install_url(self) -> str:
        params = {
            "response_type": "code",
            "redirect_uri": self._settings.redirect_uri,
            "client_id": self._settings.ghl_client_id,
            "scope": " ".join(self._settings.scope_list),
            "state": self._signer.issue(self._clock()),
        }
        return f"{self._settings.authorize_url}?{urlencode(params, quote_via=quote)}"

    # The OAuth callback -------------------------------------------------------------------
    async def complete_install(
        self, code: str | None, state: str | None, error: str | None = None
    ) -> InstallResult:
        if state:
            try:
                self._signer.verify(state, self._clock())
            except StateError as exc:
                self._counters.inc("installs_refused")
                log.warning("install refused: bad state", extra={"reason": str(exc)})
                raise InstallError(
                    400,
                    "This installation link is not valid",
                    f"The link was altered or has expired ({exc}). "
                    "Start the installation again from the Marketplace or the install link.",
                ) from exc
        if error:
            self._counters.inc("installs_refused")
            log.warning("install cancelled at GHL", extra={"error": error[:100]})
            raise InstallError(
                400,
                "The installation was not authorised",
                "GHL did not grant access to Cast SMS. Start the installation again and "
                "approve the requested permissions.",
            )
        if not code or not code.strip():
            self._counters.inc("installs_refused")
            log.warning("install refused: no authorization code")
            raise InstallError(
                400,
                "No authorization code",
                "This page must be opened by GHL at the end of an installation (the code "
                "parameter is missing). Start the installation again.",
            )
        pair = await self._exchange_code(code.strip())
        agency = pair.user_type == "Company" or (not pair.location_id and bool(pair.company_id))
        missing = self._missing_scopes(pair, agency=agency)
        if agency:
            result = await self._install_company(pair, missing)
        else:
            result = await self._install_location(pair, missing)
        self._counters.inc("installs_completed")
        return result

    async def _exchange_code(self, code: str) -> TokenResponse:
        form = {
            "client_id": self._settings.ghl_client_id,
            "client_secret": self._settings.ghl_client_secret.get_secret_value(),
            "grant_type": "authorization_code",
            "code": code,
            "user_type": "Location",
            "redirect_uri": self._settings.redirect_uri,
        }
        try:
            return await self._ghl.exchange_token(form)
        except GHLError as exc:
            self._counters.inc("installs_failed")
            refusal = token_refusal(exc)
            if refusal is Refusal.CLIENT:  # logged once, noted for check-config
                await self._tokens.client_rejected("install", exc)
            elif refusal is not Refusal.TRANSIENT:
                log.warning("install failed: GHL refused the code", extra={"status": exc.status})
                raise InstallError(
                    400,
                    "GHL did not accept the authorization",
                    "The authorization code is invalid, expired or was already used. "
                    "Start the installation again.",
                ) from exc
            else:
                log.error(
                    "install failed: GHL token exchange error",
                    extra={"status": exc.status, "reason": exc.message},
                )
            raise InstallError(
                502,
                "GHL could not complete the installation",
                "GHL did not answer the token request as expected. Nothing was stored; "
                "try the installation again in a few minutes.",
            ) from exc

    def _missing_scopes(self, pair: TokenResponse, *, agency: bool) -> list[str]:
        granted = pair.scope.split()
        if not granted:
            return []
        missing = missing_from_grant(granted, self._settings.scope_list, agency=agency)
        if missing:
            self._counters.inc("installs_missing_scopes")
            log.error(
                "installed without scopes the provider needs",
                extra={
                    "location_id": pair.location_id,
                    "company_id": pair.company_id,
                    "missing_scopes": missing,
                },
            )
        return missing

    async def _install_location(self, pair: TokenResponse, missing: list[str]) -> InstallResult:
        if not pair.location_id:
            log.error("install failed: GHL's token names no location or company")
            raise InstallError(
                502,
                "GHL did not say which sub-account was installed",
                "The token answer named no location. Nothing was stored; try again.",
            )
        await self._put_installation(
            pair, location_id=pair.location_id, user_type=pair.user_type or "Location"
        )
        log.info(
            "location installed",
            extra={"location_id": pair.location_id, "company_id": pair.company_id},
        )
        return InstallResult(
            kind="location",
            location_id=pair.location_id,
            company_id=pair.company_id,
            locations=[pair.location_id],
            missing_scopes=missing,
        )

    async def _install_company(self, pair: TokenResponse, missing: list[str]) -> InstallResult:
        if not pair.company_id:
            log.error("install failed: GHL's Company token names no company")
            raise InstallError(
                502,
                "GHL did not say which agency was installed",
                "The token answer named no company. Nothing was stored; try again.",
            )
        company_id = pair.company_id
        await self._put_installation(pair, company_id=company_id, user_type="Company")
        log.info(
            "agency installed",
            extra={"company_id": company_id, "bulk": pair.is_bulk_installation},
        )
        wanted = list(dict.fromkeys([*pair.approved_locations, *filter(None, [pair.location_id])]))
        wanted = list(dict.fromkeys([*wanted, *await self._installed_locations(company_id)]))
        obtained, failed = await self._ensure_locations(company_id, wanted)
        return InstallResult(
            kind="company",
            company_id=company_id,
            locations=obtained,
            failed_locations=failed,
            missing_scopes=missing,
            names=await self._names.all(),
        )

    async def _put_installation(self, pair: TokenResponse, **fields: Any) -> None:
        """Store what the callback's token answer installs (see `Installation.from_token`); a
        re-install keeps when it was first installed and an agency's locations."""
        installation = Installation.from_token(pair, self._clock(), **fields)
        existing = await self._repo.get(installation.id)
        if existing is not None:
            installation.installed_at = existing[0].installed_at
            installation.location_ids = existing[0].location_ids  # a location has none
        await self._repo.put(installation)

    async def _installed_locations(self, company_id: str) -> list[str]:
        """The company's locations that have the app, per GHL (empty if GHL cannot say)."""
        try:
            token = await self._tokens.company_token(company_id)
            found = await self._ghl.installed_location_names(
                token, company_id, self._settings.app_id
            )
            await self._names.remember(company_id, found, self._clock())
            return list(found)
        except (GHLError, TokenUnavailable) as exc:
            log.warning(
                "could not list the agency's installed locations",
                extra={"company_id": company_id, "reason": str(exc)},
            )
            return []

    async def _ensure_locations(
        self, company_id: str, location_ids: list[str]
    ) -> tuple[list[str], list[str]]:
        """Location tokens from the company token, a few at a time."""
        limit = asyncio.Semaphore(LOCATION_TOKEN_CONCURRENCY)
        # Listed first: a location token is obtained only for a location the agency covers.
        await self._update_company_locations(company_id, add=location_ids)

        async def one(location_id: str) -> bool:
            async with limit:
                return await self._tokens.ensure_location(location_id, company_id)

        outcomes = await asyncio.gather(*(one(loc) for loc in location_ids))
        obtained = [loc for loc, ok in zip(location_ids, outcomes, strict=True) if ok]
        failed = [loc for loc, ok in zip(location_ids, outcomes, strict=True) if not ok]
        if failed:
            self._counters.inc("location_tokens_failed", len(failed))
        return obtained, failed

    async def _update_company_locations(
        self, company_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        for _ in range(CAS_ATTEMPTS):
            found = await self._repo.get(company_key(company_id))
            if found is None:
                return
            company, rev = found
            ids = [loc for loc in dict.fromkeys([*company.location_ids, *add]) if loc not in remove]
            if ids == company.location_ids:
                return
            updated = company.model_copy(update={"location_ids": ids})
            if await self._repo.swap(updated, rev):
                return

    # App webhooks ---------------------------------------------------------------------------
    async def handle_app_webhook(self, event: AppWebhook, raw: bytes) -> dict[str, Any]:
        """Act on INSTALL, UNINSTALL and ContactDndUpdate; answer any other type `ignored`.

        A repeat is known by its `webhookId`, or without one by a digest of the body,
        remembered for GHL_APP_WEBHOOK_MAX_AGE_SECONDS (every handled event is applied as a
        state, so one seen again later does no harm). A ContactDndUpdate without a webhookId is
        always applied: a DND set, cleared and set again gives the same body twice."""
        if event.app_id is not None and event.app_id != self._settings.app_id:
            return self._ignored(event, "event for another app")
        if event.timestamp is not None:
            self._check_fresh(event.timestamp)
        handler = self._handlers.get(event.type)
        if handler is None:
            return self._ignored(event, f"event type {event.type} is not handled")
        if not (event.locations or event.company_id):
            raise ApiError(
                422, "invalid_payload", f"{event.type} names no locationId", "locationId"
            )
        if event.webhook_id is None and event.type in STATE_EVENTS:
            outcome = await handler(event, raw)
        else:
            claim = await self._claim(event, raw)
            if claim is None:
                self._counters.inc("webhooks_duplicate")
                return _answer("duplicate", event)
            try:
                outcome = await handler(event, raw)
            except BaseException:
                await asyncio.shield(self._repo.release_webhook(claim))
                raise
        self._counters.inc("app_webhooks", reason=event.type)
        return _answer(outcome, event)

    async def _claim(self, event: AppWebhook, raw: bytes) -> str | None:
        """The event's claim (its webhookId, else its body's digest), or None: a repeat."""
        claim, remembered = event.webhook_id, None
        if claim is None:
            claim = f"sha256:{hashlib.sha256(raw).hexdigest()}"
            remembered = self._settings.ghl_app_webhook_max_age_seconds
        now = self._clock()
        claimed = await self._repo.claim_webhook(claim, event.type, now, remembered=remembered)
        return claim if claimed else None

    @property
    def _handlers(self) -> dict[str, Callable[[AppWebhook, bytes], Awaitable[str]]]:
        return {
            "INSTALL": self._on_install,
            "UNINSTALL": self._on_uninstall,
            "ContactDndUpdate": self._on_contact_dnd,
        }

    def _ignored(self, event: AppWebhook, reason: str) -> dict[str, Any]:
        self._counters.inc("webhooks_ignored")
        log.info("app webhook ignored", extra={"type": event.type[:40], "reason": reason})
        return {**_answer("ignored", event), "reason": reason}

    def _check_fresh(self, timestamp: str | float) -> None:
        try:
            sent_at = parse_timestamp(timestamp)
        except (ValueError, OverflowError) as exc:
            raise ApiError(
                422, "invalid_payload", "timestamp: not an ISO-8601 date or epoch", "timestamp"
            ) from exc
        age = self._clock() - sent_at
        if abs(age) > self._settings.ghl_app_webhook_max_age_seconds:
            self._counters.inc("webhooks_rejected_stale")
            raise ApiError(
                401,
                "stale_webhook",
                f"timestamp is {age:.0f}s away from now (limit "
                f"{self._settings.ghl_app_webhook_max_age_seconds:.0f}s): refused as a replay",
                "timestamp",
            )

    async def _on_install(self, event: AppWebhook, raw: bytes) -> str:
        locations, company_id = event.locations, event.company_id
        if not locations:
            assert company_id is not None
            return await self._on_agency_install(company_id)
        if company_id is None:  # an agency's future location: GHL may not name the agency
            company_id = await self._agency_listing(locations)
            if company_id is None:
                return await self._installed_or_pending(locations)
        if await self._repo.get(company_key(company_id)) is None:
            # The OAuth callback (or a later agency token) will bring the token.
            for location_id in locations:
                await self._repo.link(location_id, company_id, self._clock())
            outcome = await self._installed_or_pending(locations)
            log.info("INSTALL received", extra={"locations": locations, "outcome": outcome})
            return outcome
        _, failed = await self._ensure_locations(company_id, locations)
        if failed:
            raise ApiError(502, "ghl_unavailable", "could not obtain a location token from GHL yet")
        log.info("INSTALL: location token ready", extra={"locations": locations})
        return "installed"

    async def _on_agency_install(self, company_id: str) -> str:
        """An agency-wide install without a location: sync the locations GHL reports."""
        if await self._repo.get(company_key(company_id)) is None:
            log.info(
                "INSTALL for an agency awaiting its OAuth callback",
                extra={"company_id": company_id},
            )
            return "pending"
        wanted = await self._installed_locations(company_id)
        _, failed = await self._ensure_locations(company_id, wanted)
        return "installed" if not failed else "partial"

    async def _installed_or_pending(self, locations: list[str]) -> str:
        for location_id in locations:
            found = await self._repo.get(location_key(location_id))
            if found is None or found[0].needs_reauth:
                return "pending"
        return "installed"

    async def _agency_listing(self, locations: list[str]) -> str | None:
        """The installed agency GHL lists any of these locations under, or None. Asked of each
        agency installation (its own token, `GET /oauth/installedLocations`): an INSTALL for a
        future location may not say which agency it belongs to."""
        wanted = set(locations)
        agencies = [row for row in await self._repo.summaries() if row.kind == "company"]
        for agency in agencies[:MAX_AGENCIES_ASKED]:
            if agency.company_id and wanted & set(
                await self._installed_locations(agency.company_id)
            ):
                return agency.company_id
        return None

    async def _on_contact_dnd(self, event: AppWebhook, raw: bytes) -> str:
        """A contact's DND changed in GHL: mirrored on the location's opt-out list."""
        try:
            update = ContactDndUpdate.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        blocked = update.sms_blocked
        if blocked is None:
            return "ignored"
        if not await self._tokens.installed(update.location_id):
            return "ignored"  # not a location of ours: nothing of theirs is kept
        return await self._optouts.apply_ghl_dnd(
            update.location_id, update.phone, blocked=blocked, message=update.sms_message
        )

    async def _on_uninstall(self, event: AppWebhook, raw: bytes) -> str:
        for location_id in event.locations:
            company_id = await self._repo.company_of(location_id) or event.company_id
            # Its link to the agency stays: a message GHL still sends for it is reported
            # NOT_INSTALLED through the agency's token (app/outbound/worker.py).
            await self._forget_location(location_id)
            if company_id:
                await self._update_company_locations(company_id, remove=[location_id])
            log.info("location uninstalled", extra={"location_id": location_id})
        if event.locations:
            return "uninstalled"
        company_id = event.company_id or ""
        found = await self._repo.get(company_key(company_id))
        if found is not None:
            for location_id in found[0].location_ids:
                location = await self._repo.get(location_key(location_id))
                if location is None or location[0].source == "company":
                    await self._forget_location(location_id)
                    await self._repo.unlink(location_id)
            await self._repo.delete(company_key(company_id))
        log.info("agency uninstalled", extra={"company_id": company_id})
        return "uninstalled"

    async def _forget_location(self, location_id: str) -> None:
        await self._repo.delete(location_key(location_id))
        await self._repo.delete_location_settings(location_id)


def _answer(status: str, event: AppWebhook) -> dict[str, Any]:
    return {"status": status, **({"webhookId": event.webhook_id} if event.webhook_id else {})}
