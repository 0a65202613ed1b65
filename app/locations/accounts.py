"""Which Cast key and sender ID a location sends with (its own account, or the default)."""

import time
from collections.abc import Callable

from app.config import Settings
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import CastAccount, LocationSettings

ACCOUNT_CACHE_SECONDS = 5.0


def account_from(settings: LocationSettings | None, default: CastAccount) -> CastAccount:
    """The location's own key and sender ID when it set them and is enabled, else the default.

    A location with only a sender ID sends it with the default key; a location with only a key
    lets Cast pick that account's sender ID (the default sender ID belongs to another account).
    """
    if settings is None or not settings.enabled:
        return default
    if settings.cast_api_key:
        return CastAccount(settings.cast_api_key, settings.sender_id, "location")
    if settings.sender_id:
        return CastAccount(default.api_key, settings.sender_id, "location")
    return default


class CastAccounts:
    """`account_for(location_id)`, cached a few seconds; a save in this process invalidates it at
    once, other processes see it within `ttl` seconds."""

    def __init__(
        self,
        settings: Settings,
        repository: LocationSettingsRepository | None,
        *,
        ttl: float = ACCOUNT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = CastAccount(
            settings.cast_api_key.get_secret_value(), settings.cast_sender_id, "default"
        )
        self._repo = repository
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, CastAccount]] = {}

    async def account_for(self, location_id: str) -> CastAccount:
        if self._repo is None:
            return self.default
        now = self._clock()
        cached = self._cache.get(location_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        account = account_from(await self._repo.get(location_id), self.default)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[location_id] = (now + self._ttl, account)
        return account

    def invalidate(self, location_id: str) -> None:
        self._cache.pop(location_id, None)
