"""Per-location settings: the only code that reads or writes `location_settings`.

One document per location (id = GHL locationId). The Cast API key is encrypted at rest with the
same cipher as the OAuth tokens; everything else is plain. The document is deleted with the
location on UNINSTALL (by the installation repository).

`location_senders` indexes which locations send as, or were assigned, a sender ID
(`<sender key>|<locationId>`), so a reply addressed to a SIM number finds its location. New
entries are written before the settings and stale ones removed after, and every answer is the
settings themselves (app/locations/owners.py decides who owns the sender), so an entry left
behind by a crash or an uninstall is never believed.
"""

import time
from typing import Any

from app.cast.senders import sender_key
from app.locations.schemas import LocationSettings
from app.oauth.crypto import TokenCipher
from app.oauth.keyholders import KeyHolderRepository, keys_held_elsewhere
from app.oauth.repository import reencrypt_collection
from app.store import Store

COLLECTION = "location_settings"
TEST_SMS_QUOTA = "test-sms:"
PAGE_VIEW_QUOTA = "page-views:"
SENDERS = "location_senders"
CREDIT_SETTINGS_LIMIT = 100_000  # every location, for the metrics' key -> location map
MAX_SENDER_OWNERS = 20  # locations read to answer `locations_sending_as`


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

    async def keys_missing_here(self) -> list[str]:
        """Encryption keys (fingerprints) other bridges lately held that this process lacks: a
        Cast key it cannot decrypt was then probably saved under one of them."""
        mine = self._cipher.fingerprints
        return await keys_held_elsewhere(KeyHolderRepository(self._store), mine, time.time())

    async def credit_settings(self) -> list[tuple[str, str | None, int | None]]:
        """(location id, its own Cast key or None, its own low-credit threshold or None) of
        every location with settings; an unreadable key comes back as None."""
        rows = []
        for doc in await self._store.list_docs(COLLECTION, CREDIT_SETTINGS_LIMIT):
            key = doc.data.get("cast_api_key")
            try:
                key = self._cipher.decrypt(key) if key else None
            except ValueError:
                key = None
            rows.append((doc.id, key, doc.data.get("low_credit_threshold")))
        return rows

    async def reencrypt(self) -> tuple[int, int]:
        """Every stored Cast key encrypted again with the newest key."""
        return await reencrypt_collection(self._store, self._cipher, COLLECTION, ("cast_api_key",))

    async def put(self, settings: LocationSettings) -> None:
        data: dict[str, Any] = settings.model_dump(exclude={"location_id", "key_unreadable"})
        if settings.cast_api_key:
            data["cast_api_key"] = self._cipher.encrypt(settings.cast_api_key)
        location_id = settings.location_id
        previous = await self._store.get_doc(COLLECTION, location_id)
        entries = _sender_entries(data, location_id)
        for entry in entries:
            await self._store.put_doc(SENDERS, entry, {"location_id": location_id})
        await self._store.put_doc(COLLECTION, location_id, data)
        stale = _sender_entries(previous.data, location_id) - entries if previous else set()
        for entry in stale:
            await self._store.delete_doc(SENDERS, entry)

    async def mark_sender_checked(self, location_id: str, sender_id: str) -> bool:
        """Cast has since listed the location's sender ID for its key; False when the settings
        changed meanwhile (nothing is written then)."""
        doc = await self._store.get_doc(COLLECTION, location_id)
        sender = doc.data.get("sender_id") if doc else None
        if doc is None or sender is None or sender_key(sender) != sender_key(sender_id):
            return False
        return await self._store.swap_doc(
            COLLECTION, location_id, doc.rev, {**doc.data, "sender_checked": True}
        )

    async def take_test_sms(
        self, location_id: str, *, now: float, window: float, limit: int
    ) -> bool:
        """Count one settings-page test SMS of the location: False when `limit` were already
        sent within `window` seconds (counted atomically in the store, every test SMS)."""
        return await self._store.take_quota(
            TEST_SMS_QUOTA + location_id, now=now, window=window, limit=limit
        )

    async def take_page_view(
        self, location_id: str, *, now: float, window: float, limit: int
    ) -> bool:
        """Count one settings-page view of the location: False past `limit` within `window`."""
        return await self._store.take_quota(
            PAGE_VIEW_QUOTA + location_id, now=now, window=window, limit=limit
        )

    async def all_location_ids(self, limit: int = 100_000) -> list[str]:
        """Every location with stored settings."""
        return [doc.id for doc in await self._store.list_docs(COLLECTION, limit)]

    async def locations_naming(self, sender_id: str) -> list[LocationSettings]:
        """The settings of the locations that send as, or were assigned, `sender_id` (any
        spelling of a number), at most MAX_SENDER_OWNERS; keys decrypted where readable."""
        wanted = sender_key(sender_id)
        entries = await self._store.list_docs_with_prefix(
            SENDERS, f"{wanted}|", limit=MAX_SENDER_OWNERS
        )
        found = []
        for entry in entries:
            settings = await self.get(entry.data["location_id"], strict=False)
            if settings is not None and wanted in _sender_keys(settings.model_dump()):
                found.append(settings)
        return found


def _sender_keys(data: dict[str, Any]) -> set[str]:
    named = [data.get("sender_id"), *data.get("assigned_senders", [])]
    return {sender_key(sender) for sender in named if sender}


def _sender_entries(data: dict[str, Any], location_id: str) -> set[str]:
    return {f"{key}|{location_id}" for key in _sender_keys(data)}
