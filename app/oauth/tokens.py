"""One function gives a valid location access token.

GHL refresh tokens are single-use: two concurrent refreshes for one location lock it out. So a
refresh (or a first location token from an agency token) happens under

1. an in-process lock per installation, so the coroutines of one process share one refresh;
2. a named lease in the store (`refresh:location:<id>`), so only one bridge process talks to GHL
   for an installation at a time. The lease outlasts every GHL call made while holding it, so it
   cannot expire under a slow refresh and let a second process spend the same refresh token;
3. a compare-and-swap on the document revision when the new pair is written: if someone else
   (a re-install) stored a newer pair meanwhile, theirs wins; if only other fields changed, our
   pair is written over the current document, so a pair GHL issued is never thrown away.

Losers wait for the lease and then find the winner's token. GHL's refusals are classified as
OAuth defines them (RFC 6749 section 5.2, `token_refusal`):

- `invalid_grant` (the refresh token was used, revoked or expired) marks that installation
  `needs_reauth`, unless an agency (Company) token can give the location a new token;
- `invalid_client` / `unauthorized_client`, or any 401, refuse the app's own credentials: an
  app-level fault that flags no installation (one error log per process until a refresh
  succeeds, a metric, and a note in the store that `cast-ghl check-config` shows);
- any other 4xx (`invalid_request`, a 422, ...) fails at once with GHL's text: retrying the
  same request cannot help. Timeouts, 408/425/429 and 5xx stay transient (the caller retries).
"""

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from app.config import Settings
from app.ghl.client import GHLClient, GHLError
from app.ghl.schemas import TokenResponse
from app.kit.ttl_cache import TTLCache
from app.metrics import Counters
from app.oauth.crypto import KeyNotHeld
from app.oauth.repository import InstallationRepository, company_key, location_key
from app.oauth.schemas import Installation
from app.store import Store

log = logging.getLogger(__name__)

REFRESH_AHEAD_SECONDS = 300
MIN_REFRESH_LEASE_SECONDS = 30
WAIT_STEP_SECONDS = 0.05
# reauthorization_needed runs for every outbound message: a "nothing needed" answer is reused this
# long (a store read and two decryptions less per message, ~0.9 ms of webhook-to-Cast latency);
# a reason is never reused, and this process forgets the answer when it flags the location.
REAUTH_CHECK_REUSE_SECONDS = 2.0


KEY_NOT_HELD = "ENCRYPTION_KEY_NOT_HELD"  # a record written with a key this bridge lacks: wait


class TokenUnavailable(Exception):
    """No usable token: not installed, or GHL refused the refresh (re-authorisation needed)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def final(self) -> bool:
        """GHL refused the token request itself (GHL_TOKEN_REFUSED): asking again cannot help,
        whereas an operator's fix or a re-install may end the other reasons."""
        return self.code == "GHL_TOKEN_REFUSED"


# Where GHL notes an app-level fault (its refusal of our client credentials) for check-config.
APP_FAULTS, CLIENT_REJECTED_DOC = "app_faults", "ghl_client_rejected"
TRANSIENT_TOKEN_STATUSES = {408, 425, 429}
OAUTH_ERRORS = ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_request")
OAUTH_ERRORS += ("unsupported_grant_type", "invalid_scope")


class Refusal(StrEnum):
    TRANSIENT = "transient"  # no answer, 408/425/429, 5xx: try again later
    GRANT = "grant"  # invalid_grant: this installation must be re-installed
    CLIENT = "client"  # our client id/secret refused: the operator's fault, every installation
    REQUEST = "request"  # any other 4xx: this request cannot succeed as it is


def _json_body(exc: GHLError) -> dict[str, Any] | None:
    try:
        body = json.loads(exc.body)
    except ValueError:
        return None  # not JSON, or cut short (GHLError keeps 300 characters)
    return body if isinstance(body, dict) else None


def oauth_error(exc: GHLError) -> str | None:
    """The OAuth `error` code of GHL's answer, if it names one."""
    body = _json_body(exc)
    if body is not None and isinstance(body.get("error"), str):
        return body["error"]
    return next((word for word in OAUTH_ERRORS if word in exc.body), None)


def token_refusal(exc: GHLError) -> Refusal:
    """What a refused `POST /oauth/token` (or `/oauth/locationToken`) means."""
    if exc.status is None or exc.status in TRANSIENT_TOKEN_STATUSES or exc.status >= 500:
        return Refusal.TRANSIENT
    error = oauth_error(exc)
    if error == "invalid_grant":
        return Refusal.GRANT
    if error in ("invalid_client", "unauthorized_client") or exc.status == 401:
        return Refusal.CLIENT
    return Refusal.REQUEST


def refusal_text(exc: GHLError) -> str:
    """GHL's own words for a refusal (`error_description`, `message`), never more of the body."""
    body = _json_body(exc)
    if body is None:
        return oauth_error(exc) or "refused"
    words = [body.get(k) for k in ("error", "error_description", "message")]
    return ": ".join(str(w)[:120] for w in words if isinstance(w, str | list) and w) or "refused"


def _not_installed(key: str) -> TokenUnavailable:
    kind, _, ident = key.partition(":")
    return TokenUnavailable(
        f"Cast SMS is not installed for {kind} {ident}: install the app", code="NOT_INSTALLED"
    )


class TokenService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        repository: InstallationRepository,
        ghl: GHLClient,
        counters: Counters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._repo = repository
        self._ghl = ghl
        self._counters = counters
        self._locks: dict[str, asyncio.Lock] = {}
        self._client_fault_logged = False  # one error log per fault (see the module docstring)
        # Locations found usable / installed (see above), not asked about again for a while.
        self._known_usable: TTLCache[str, bool] = TTLCache(REAUTH_CHECK_REUSE_SECONDS)
        self._known_installed: TTLCache[str, bool] = TTLCache(REAUTH_CHECK_REUSE_SECONDS)
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Up to four GHL calls happen under one lease (company refresh, location token, retry).
        self._lease_seconds = max(
            MIN_REFRESH_LEASE_SECONDS, 4 * settings.ghl_api_timeout_seconds + 10
        )

    # Public API -------------------------------------------------------------------------
    async def access_token(self, location_id: str) -> str:
        """A location access token valid for at least five more minutes."""
        return await self._token(location_key(location_id))

    async def company_token(self, company_id: str) -> str:
        return await self._token(company_key(company_id))

    async def refresh_after_unauthorized(self, location_id: str, rejected: str) -> str:
        """GHL answered 401 to `rejected`: refresh once unless someone already did."""
        return await self._refresh(location_key(location_id), rejected=rejected)

    async def with_location_token[T](
        self,
        location_id: str,
        call: Callable[[str], Awaitable[T]],
        may_refresh: Callable[[], bool] = lambda: True,
    ) -> T:
        """`call(token)`; when GHL answers 401 and `may_refresh()` agrees, once more with a
        refreshed token (a job refreshes once in its life: see `Job.spend_token_refresh`)."""
        return await self._with_token(location_key(location_id), call, may_refresh)

    async def _installation(self, key: str) -> tuple[Installation, int] | None:
        """The stored installation and its revision; one written with an encryption key this
        bridge lacks (a rotation under way) is a TokenUnavailable to wait out, not a
        re-install."""
        try:
            return await self._repo.get_usable(key)
        except KeyNotHeld as exc:
            log.warning(
                "installation encrypted with a key this bridge lacks: waiting for a restart "
                "with the newest TOKEN_ENCRYPTION_KEY (or a bridge that has it)",
                extra={"installation": key, "keys": exc.keys},
            )
            raise TokenUnavailable(exc.message, code=KEY_NOT_HELD) from None

    async def reauthorization_needed(self, location_id: str) -> str | None:
        """Why this location cannot be served until it is re-installed, or None.

        Another process flagging the location is seen within REAUTH_CHECK_REUSE_SECONDS."""
        if location_id in self._known_usable:
            return None
        found = await self._installation(location_key(location_id))
        if found is None or not found[0].needs_reauth:
            self._known_usable.put(location_id, True)
            return None
        self._known_usable.pop(location_id)
        return found[0].reauth_reason or "GHL refused the token refresh"

    async def installed(self, location_id: str) -> bool:
        """Whether the app is installed for this location: its own installation, or an agency
        installation that covers it (its token is then obtained from the agency's when first
        needed). A location GHL merely named (a link) is not installed."""
        if location_id in self._known_installed:
            return True
        own = await self._installation(location_key(location_id))
        if own is None and await self._agency_of(location_id) is None:
            return False
        self._known_installed.put(location_id, True)
        return True

    async def reporting_token(self, location_id: str) -> str:
        """A location token for a location without an installation, only to tell GHL that its
        message was not sent: from the token of the agency GHL named it under, through
        `POST /oauth/locationToken`, and not stored (the location stays uninstalled).
        TokenUnavailable (NOT_INSTALLED) when no agency token can give one."""
        company_id = await self._repo.company_of(location_id)
        if company_id is None or await self._installation(company_key(company_id)) is None:
            raise _not_installed(location_key(location_id))
        try:
            pair = await self._with_token(
                company_key(company_id),
                lambda token: self._ghl.location_token(token, company_id, location_id),
            )
        except GHLError as exc:
            if exc.retryable:
                raise
            raise _not_installed(location_key(location_id)) from exc
        return pair.access_token

    async def ensure_location(self, location_id: str, company_id: str) -> bool:
        """Make sure `location_id` has a usable token, from the company's token if needed.

        Used at agency install time and on INSTALL webhooks: it also heals a location marked
        `needs_reauth`. False (and logged) when no token could be obtained now.
        """
        await self._repo.link(location_id, company_id, self._clock())
        try:
            await self._refresh(location_key(location_id), rejected=None, heal=True)
        except (TokenUnavailable, GHLError) as exc:
            log.warning(
                "no location token from the agency token yet",
                extra={"location_id": location_id, "company_id": company_id, "reason": str(exc)},
            )
            return False
        return True

    async def client_fault(self) -> dict[str, Any] | None:
        """When and how GHL last refused the app's client credentials, if no refresh has
        succeeded since (`cast-ghl check-config`)."""
        found = await self._store.get_doc(APP_FAULTS, CLIENT_REJECTED_DOC)
        return found.data if found is not None else None

    # Internals ----------------------------------------------------------------------------
    async def _with_token[T](
        self,
        key: str,
        call: Callable[[str], Awaitable[T]],
        may_refresh: Callable[[], bool] = lambda: True,
    ) -> T:
        token = await self._token(key)
        try:
            return await call(token)
        except GHLError as exc:
            if not exc.unauthorized or not may_refresh():
                raise
            token = await self._refresh(key, rejected=token)
            return await call(token)

    async def _token(self, key: str) -> str:
        found = await self._installation(key)
        if found is not None:
            installation, _ = found
            _check_usable(installation)
            if self._fresh(installation):
                return installation.access_token
        return await self._refresh(key, rejected=None)

    async def _usable(self, key: str, rejected: str | None, heal: bool) -> str | None:
        """The stored token if it can be used as is; None if it must be renewed."""
        found = await self._installation(key)
        if found is None:
            return None
        installation, _ = found
        if installation.needs_reauth:
            if heal:
                return None
            _check_usable(installation)
        if not self._fresh(installation):
            return None
        if rejected is not None and installation.access_token == rejected:
            return None
        return installation.access_token

    async def _refresh(self, key: str, rejected: str | None, heal: bool = False) -> str:
        lock = self._locks.setdefault(key, asyncio.Lock())
        lease = f"refresh:{key}"
        async with lock:
            while True:
                token = await self._usable(key, rejected, heal)
                if token is not None:
                    return token
                if await self._store.acquire_lease(
                    lease, self._owner, now=self._clock(), seconds=self._lease_seconds
                ):
                    break
                await asyncio.sleep(WAIT_STEP_SECONDS)
            try:
                # Re-read under the lease: another process may have refreshed meanwhile.
                token = await self._usable(key, rejected, heal)
                if token is not None:
                    return token
                return await self._renew(key, heal)
            finally:
                await self._store.release_lease(lease, self._owner)

    async def _renew(self, key: str, heal: bool) -> str:
        """Holding the lease: get a new pair from GHL and store it."""
        found = await self._installation(key)
        location_id = key.removeprefix("location:") if key.startswith("location:") else None
        if found is None:
            if location_id is not None:
                token = await self._via_company(location_id, None)
                if token is not None:
                    return token
            raise _not_installed(key)
        installation, rev = found
        if installation.needs_reauth or not installation.refresh_token:
            if location_id is not None and (heal or not installation.needs_reauth):
                token = await self._via_company(location_id, found)
                if token is not None:
                    return token
            if not installation.needs_reauth:
                await self._mark_reauth(installation, rev, "no refresh token stored")
            _check_usable(installation)
            raise TokenUnavailable("no refresh token stored", code="REAUTHORIZATION_NEEDED")
        try:
            pair = await self._exchange_refresh(installation)
        except GHLError as exc:
            self._counters.inc("token_refresh_failures")
            refusal = token_refusal(exc)
            if refusal is Refusal.TRANSIENT:
                raise  # the caller retries later
            if refusal is Refusal.CLIENT:
                raise await self.client_rejected(key, exc) from exc
            if refusal is Refusal.REQUEST:
                raise _request_refused(key, exc) from exc
            if location_id is not None:
                token = await self._via_company(location_id, found)
                if token is not None:
                    return token
            reason = f"GHL refused the token refresh ({exc.status} invalid_grant)"
            await self._mark_reauth(installation, rev, reason)
            self._counters.inc("installations_needing_reauth")
            log.error(
                "token refresh refused: the installation needs re-authorisation",
                extra={"installation": key, "status": exc.status, "error": "invalid_grant"},
            )
            raise TokenUnavailable(
                f"{reason}: re-install Cast SMS for this location",
                code="REAUTHORIZATION_NEEDED",
            ) from exc
        self._counters.inc("token_refreshes")
        token = await self._store_pair(installation, rev, pair)
        log.info("token refreshed", extra={"installation": key})
        await self._client_accepted()
        return token

    async def client_rejected(self, key: str, exc: GHLError) -> TokenUnavailable:
        """An app-level fault: noted for check-config, logged once, flags no installation."""
        self._counters.inc("ghl_client_rejected")
        text = refusal_text(exc)
        await self._store.put_doc(
            APP_FAULTS,
            CLIENT_REJECTED_DOC,
            {"at": self._clock(), "status": exc.status, "error": text, "installation": key},
        )
        if not self._client_fault_logged:
            self._client_fault_logged = True
            log.error(
                "GHL refused the app's client credentials: check GHL_CLIENT_ID and "
                "GHL_CLIENT_SECRET (no installation is flagged)",
                extra={"installation": key, "status": exc.status, "error": text},
            )
        return TokenUnavailable(
            f"GHL refused the app's client credentials ({exc.status} {text}): the operator "
            "must check GHL_CLIENT_ID and GHL_CLIENT_SECRET",
            code="GHL_CLIENT_REJECTED",
        )

    async def _client_accepted(self) -> None:
        """A refresh succeeded: the client credentials are good (again)."""
        if self._client_fault_logged or await self.client_fault() is not None:
            self._client_fault_logged = False
            await self._store.delete_doc(APP_FAULTS, CLIENT_REJECTED_DOC)

    async def _exchange_refresh(self, installation: Installation) -> TokenResponse:
        user_type = installation.user_type or (
            "Company" if installation.kind == "company" else "Location"
        )
        return await self._ghl.exchange_token(
            {
                "client_id": self._settings.ghl_client_id,
                "client_secret": self._settings.ghl_client_secret.get_secret_value(),
                "grant_type": "refresh_token",
                "refresh_token": installation.refresh_token or "",
                "user_type": user_type,
                "redirect_uri": self._settings.redirect_uri,
            }
        )

    async def _store_pair(
        self, old: Installation, rev: int, pair: TokenResponse, **extra: object
    ) -> str:
        """Write a pair GHL just issued; never lose it to a concurrent non-token change."""
        now = self._clock()
        fields: dict[str, object] = {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token or old.refresh_token,
            "expires_at": now + pair.expires_in,
            "scopes": pair.scope.split() or old.scopes,
            "needs_reauth": False,
            "reauth_reason": None,
            "updated_at": now,
            **extra,
        }
        candidate = old.model_copy(update=fields)
        while not await self._repo.swap(candidate, rev):
            found = await self._installation(old.id)
            if found is None:
                raise _not_installed(old.id)  # uninstalled meanwhile
            current, rev = found
            if (current.access_token, current.refresh_token) != (
                old.access_token,
                old.refresh_token,
            ):
                # A re-install stored a newer pair meanwhile: it wins.
                _check_usable(current)
                return current.access_token
            candidate = current.model_copy(update=fields)
        return candidate.access_token

    async def _via_company(
        self, location_id: str, existing: tuple[Installation, int] | None
    ) -> str | None:
        """Holding the location's lease: a location token from its agency's token, or None."""
        company_id = (
            existing[0].company_id
            if existing is not None and existing[0].company_id
            else await self._agency_of(location_id)
        )
        if company_id is None or await self._installation(company_key(company_id)) is None:
            return None
        try:
            pair = await self._with_token(
                company_key(company_id),
                lambda token: self._ghl.location_token(token, company_id, location_id),
            )
        except TokenUnavailable as exc:
            log.warning(
                "the agency token cannot give a location token",
                extra={"location_id": location_id, "company_id": company_id, "reason": exc.code},
            )
            return None
        except GHLError as exc:
            if exc.retryable:
                raise
            log.warning(
                "GHL refused a location token from the agency token",
                extra={"location_id": location_id, "company_id": company_id, "status": exc.status},
            )
            return None
        self._counters.inc("location_tokens_from_company")
        log.info(
            "location token obtained from the agency token",
            extra={"location_id": location_id, "company_id": company_id},
        )
        if existing is not None:
            old, rev = existing
            return await self._store_pair(
                old, rev, pair, source="company", company_id=company_id, user_type="Location"
            )
        installation = Installation.from_token(
            pair,
            self._clock(),
            location_id=location_id,
            company_id=company_id,
            user_type="Location",
            source="company",
        )
        if await self._repo.swap(installation, 0):
            return installation.access_token
        found = await self._installation(installation.id)  # the OAuth callback stored one meanwhile
        if found is None:
            return None
        _check_usable(found[0])
        return found[0].access_token

    async def _agency_of(self, location_id: str) -> str | None:
        """The installed agency whose installation covers this location, or None."""
        company_id = await self._repo.company_of(location_id)
        if company_id is None:
            return None
        found = await self._installation(company_key(company_id))
        return company_id if found is not None and location_id in found[0].location_ids else None

    async def _mark_reauth(self, installation: Installation, rev: int, reason: str) -> None:
        flagged = installation.model_copy(
            update={"needs_reauth": True, "reauth_reason": reason, "updated_at": self._clock()}
        )
        if installation.location_id is not None:
            self._known_usable.pop(installation.location_id)
        await self._repo.swap(flagged, rev)

    def _fresh(self, installation: Installation) -> bool:
        """Valid for more than REFRESH_AHEAD_SECONDS: a token is renewed ahead of expiry."""
        return installation.expires_at - self._clock() > REFRESH_AHEAD_SECONDS


def _request_refused(key: str, exc: GHLError) -> TokenUnavailable:
    """A 4xx that is neither the grant's nor the client's fault: fail now, with GHL's text."""
    text = refusal_text(exc)
    log.error(
        "GHL refused the token refresh request",
        extra={"installation": key, "status": exc.status, "error": text},
    )
    return TokenUnavailable(
        f"GHL refused the token refresh ({exc.status} {text})", code="GHL_TOKEN_REFUSED"
    )


def _check_usable(installation: Installation) -> None:
    if installation.needs_reauth:
        raise TokenUnavailable(
            "Cast SMS needs to be re-authorised for this location: "
            f"{installation.reauth_reason or 'GHL refused the token refresh'}",
            code="REAUTHORIZATION_NEEDED",
        )
