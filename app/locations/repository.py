"""Per-location settings: the only code that reads or writes `location_settings`.

One document per location (id = GHL locationId). The Cast API key is encrypted at rest with the
same cipher as the OAuth tokens; everything else is plain. The document is deleted with the
location on UNINSTALL (by the installation repository).
"""

from typing import Any

from app.locations.schemas import LocationSettings
from app.oauth.crypto import TokenCipher
from app.oauth.repository import reencrypt_collection
from app.store import Store

COLLECTION = "location_settings"
TEST_SMS_QUOTA = "test-sms:"


class LocationSettingsRepository:
    def __init__(self, store: Store, cipher: TokenCipher) -> None:
        self._store = store
        self._cipher = cipher

    async def get(self, location_id: str, *, strict: bool = True) -> LocationSettings | None:
        """The settings with the key decrypted. A key that cannot be decrypted (the encryption
        key changed) raises ValueError, or with `strict=False` comes back as `key_unreadable`."""
        doc = await self._store.get_doc(COLLECTION, location_id)
        if doc is None:
            return None
        data = dict(doc.data)
        if data.get("cast_api_key"):
            try:
                data["cast_api_key"] = self._cipher.decrypt(data["cast_api_key"])
            except ValueError:
                if strict:
                    raise
                data["cast_api_key"], data["key_unreadable"] = None, True
        return LocationSettings.model_validate({**data, "location_id": location_id})

    async def reencrypt(self) -> tuple[int, int]:
        """Every stored Cast key encrypted again with the newest key."""
        return await reencrypt_collection(self._store, self._cipher, COLLECTION, ("cast_api_key",))

    async def put(self, settings: LocationSettings) -> None:
        data: dict[str, Any] = settings.model_dump(exclude={"location_id", "key_unreadable"})
        if settings.cast_api_key:
            data["cast_api_key"] = self._cipher.encrypt(settings.cast_api_key)
        await self._store.put_doc(COLLECTION, settings.location_id, data)

    async def take_test_sms(
        self, location_id: str, *, now: float, window: float, limit: int
    ) -> bool:
        """Count one settings-page test SMS of the location: False when `limit` were already
        sent within `window` seconds (counted atomically in the store, every test SMS)."""
        return await self._store.take_quota(
            TEST_SMS_QUOTA + location_id, now=now, window=window, limit=limit
        )
