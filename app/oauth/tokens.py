"""One function gives a valid location access token.

GHL refresh tokens are single-use: two concurrent refreshes for one location lock it out. So a
refresh happens under (1) an in-process lock per location, so coroutines share one refresh, and
(2) a named lease in the store, so only one bridge process refreshes a location at a time; the
result is written with compare-and-swap on the document revision. Losers wait for the winner's
write and reuse its token.
"""

import asyncio
import logging
import os
import time
import uuid

from app.config import Settings
from app.ghl.client import GHLClient, GHLError
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.schemas import Installation
from app.store import Store

log = logging.getLogger(__name__)

REFRESH_AHEAD_SECONDS = 300
REFRESH_LEASE_SECONDS = 30
WAIT_STEP_SECONDS = 0.05


class TokenUnavailable(Exception):
    """No usable token: not installed, or GHL refused the refresh (re-authorisation needed)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TokenService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        repository: InstallationRepository,
        ghl: GHLClient,
    ) -> None:
        self._settings = settings
        self._store = store
        self._repo = repository
        self._ghl = ghl
        self._locks: dict[str, asyncio.Lock] = {}
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.refreshes = 0
        self.refresh_failures = 0

    async def access_token(self, location_id: str) -> str:
        installation, _ = await self._load(location_id)
        if installation.expires_at - time.time() > REFRESH_AHEAD_SECONDS:
            return installation.access_token
        return await self._refresh(location_id, rejected=None)

    async def reauthorization_needed(self, location_id: str) -> str | None:
        """Why this location cannot be served until it is re-installed, or None."""
        found = await self._repo.get(location_key(location_id))
        if found is None or not found[0].needs_reauth:
            return None
        return found[0].reauth_reason or "GHL refused the token refresh"

    async def refresh_after_unauthorized(self, location_id: str, rejected: str) -> str:
        """GHL answered 401 to `rejected`: refresh once unless someone already did."""
        return await self._refresh(location_id, rejected=rejected)

    async def _load(self, location_id: str) -> tuple[Installation, int]:
        found = await self._repo.get(location_key(location_id))
        if found is None:
            raise TokenUnavailable(
                f"Cast SMS is not installed for location {location_id}: install the app",
                code="NOT_INSTALLED",
            )
        installation, rev = found
        if installation.needs_reauth:
            raise TokenUnavailable(
                "Cast SMS needs to be re-authorised for this location: "
                f"{installation.reauth_reason or 'GHL refused the token refresh'}",
                code="REAUTHORIZATION_NEEDED",
            )
        return installation, rev

    def _still_good(self, installation: Installation, rejected: str | None) -> bool:
        if rejected is not None:
            return installation.access_token != rejected
        return installation.expires_at - time.time() > REFRESH_AHEAD_SECONDS

    async def _refresh(self, location_id: str, rejected: str | None) -> str:
        lock = self._locks.setdefault(location_id, asyncio.Lock())
        async with lock:
            lease = f"refresh:{location_id}"
            while True:
                installation, rev = await self._load(location_id)
                if self._still_good(installation, rejected):
                    return installation.access_token
                if await self._store.acquire_lease(
                    lease, self._owner, now=time.time(), seconds=REFRESH_LEASE_SECONDS
                ):
                    break
                await asyncio.sleep(WAIT_STEP_SECONDS)
            try:
                installation, rev = await self._load(location_id)
                if self._still_good(installation, rejected):
                    return installation.access_token
                return await self._refresh_with_ghl(installation, rev)
            finally:
                await self._store.release_lease(lease, self._owner)

    async def _refresh_with_ghl(self, installation: Installation, rev: int) -> str:
        if not installation.refresh_token:
            await self._mark_reauth(installation, rev, "no refresh token stored")
            raise TokenUnavailable("no refresh token stored", code="REAUTHORIZATION_NEEDED")
        form = {
            "client_id": self._settings.ghl_client_id,
            "client_secret": self._settings.ghl_client_secret.get_secret_value(),
            "grant_type": "refresh_token",
            "refresh_token": installation.refresh_token,
            "user_type": "Location",
            "redirect_uri": self._settings.redirect_uri,
        }
        self.refreshes += 1
        try:
            token = await self._ghl.exchange_token(form)
        except GHLError as exc:
            self.refresh_failures += 1
            if exc.status in (400, 401):
                await self._mark_reauth(
                    installation, rev, f"GHL refused the refresh ({exc.status})"
                )
                log.error(
                    "token refresh refused: location needs re-authorisation",
                    extra={"location_id": installation.location_id, "status": exc.status},
                )
                raise TokenUnavailable(
                    "GHL refused the token refresh: re-install Cast SMS for this location",
                    code="REAUTHORIZATION_NEEDED",
                ) from exc
            raise
        now = time.time()
        refreshed = installation.model_copy(
            update={
                "access_token": token.access_token,
                "refresh_token": token.refresh_token or installation.refresh_token,
                "expires_at": now + token.expires_in,
                "scopes": token.scope.split() or installation.scopes,
                "updated_at": now,
            }
        )
        if not await self._repo.swap(refreshed, rev):
            # Another writer changed the document while we held the lease (an install, say):
            # its token is newer than ours.
            current, _ = await self._load(installation.location_id or "")
            return current.access_token
        log.info("token refreshed", extra={"location_id": installation.location_id})
        return refreshed.access_token

    async def _mark_reauth(self, installation: Installation, rev: int, reason: str) -> None:
        flagged = installation.model_copy(
            update={"needs_reauth": True, "reauth_reason": reason, "updated_at": time.time()}
        )
        await self._repo.swap(flagged, rev)
