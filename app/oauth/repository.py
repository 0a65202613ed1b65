"""Installations and their tokens: the only code that reads or writes them, encrypted at rest.

Collections:
- `installations`: one document per location (`location:<id>`) and per agency company
  (`company:<id>`); access and refresh tokens are Fernet-encrypted, everything else is plain.
- `installation_links`: location id -> company id, written when GHL tells us a location belongs
  to a company that installed the app, so a location token can be obtained from the company
  token even before the location has a document of its own.
- `app_webhooks`: webhookIds of app webhooks already handled (replay protection), or for a
  webhook without one, `sha256:<digest of its body>`.
- `location_settings`: per-location settings; deleted with the location on UNINSTALL.
"""

import logging
import math
import time

from app.kit.ttl_cache import TTLCache
from app.oauth.crypto import KeyNotHeld, TokenCipher, UndecryptableError
from app.oauth.keyholders import (
    KeyHolder,
    KeyHolderRepository,
    keys_held_elsewhere,
    live_bridges_lacking,
)
from app.oauth.schemas import Installation, InstallationSummary
from app.oauth.schemas import company_key as company_key  # the document ids, re-exported
from app.oauth.schemas import location_key as location_key
from app.store import Doc, Store

COLLECTION = "installations"
LINKS = "installation_links"
APP_WEBHOOKS = "app_webhooks"
LOCATION_SETTINGS = "location_settings"
_SECRET_FIELDS = ("access_token", "refresh_token")
REENCRYPT_LIMIT = 1_000_000  # every document: re-encryption is a one-off operator command
UNDECRYPTABLE_REASON = (
    "its stored tokens cannot be decrypted with TOKEN_ENCRYPTION_KEY (the key was lost or "
    "removed): install the app again"
)

log = logging.getLogger(__name__)
_reported_undecryptable: TTLCache[str, bool] = TTLCache(math.inf)  # once per process


class InstallationRepository:
    def __init__(self, store: Store, cipher: TokenCipher) -> None:
        self._store = store
        self._cipher = cipher
        self._holders = KeyHolderRepository(store)

    def _encode(self, installation: Installation) -> dict[str, object]:
        data = installation.model_dump()
        for field in _SECRET_FIELDS:
            if data[field] is not None:
                data[field] = self._cipher.encrypt(data[field])
        return data

    def _decode(self, doc: Doc) -> Installation:
        try:
            return self._decrypted(doc)
        except UndecryptableError:
            return _undecryptable(doc)

    def _decrypted(self, doc: Doc) -> Installation:
        data = dict(doc.data)
        for field in _SECRET_FIELDS:
            if data.get(field) is not None:
                data[field] = self._cipher.decrypt(data[field])
        return Installation.model_validate(data)

    async def reencrypt(self) -> tuple[int, int]:
        """Every installation's tokens encrypted again with the newest key."""
        return await reencrypt_collection(self._store, self._cipher, COLLECTION, _SECRET_FIELDS)

    async def live_bridges_lacking_newest_key(self, now: float) -> tuple[str, list[KeyHolder]]:
        """This process's newest key (fingerprint) and the live bridges (key heartbeats) that
        do not hold it."""
        newest = self._cipher.newest_fingerprint
        return newest, await live_bridges_lacking(self._holders, newest, now)

    async def get(self, key: str) -> tuple[Installation, int] | None:
        """The installation and its revision (for compare-and-swap)."""
        doc = await self._store.get_doc(COLLECTION, key)
        return (self._decode(doc), doc.rev) if doc else None

    async def get_usable(self, key: str) -> tuple[Installation, int] | None:
        """As `get`, for using the tokens: a record no key of this process decrypts while other
        bridges lately held keys it lacks raises KeyNotHeld (the work waits for a bridge with
        the key) instead of reading as needing a re-install."""
        doc = await self._store.get_doc(COLLECTION, key)
        if doc is None:
            return None
        try:
            return self._decrypted(doc), doc.rev
        except UndecryptableError:
            mine = self._cipher.fingerprints
            if missing := await keys_held_elsewhere(self._holders, mine, time.time()):
                raise KeyNotHeld(missing) from None
            return _undecryptable(doc), doc.rev

    async def put(self, installation: Installation) -> None:
        await self._store.put_doc(COLLECTION, installation.id, self._encode(installation))

    async def swap(self, installation: Installation, expected_rev: int) -> bool:
        """Write only if the document is still at `expected_rev` (0: must not exist yet)."""
        return await self._store.swap_doc(
            COLLECTION, installation.id, expected_rev, self._encode(installation)
        )

    async def delete(self, key: str) -> bool:
        return await self._store.delete_doc(COLLECTION, key)

    async def summaries(self, limit: int = 1000) -> list[InstallationSummary]:
        """What may be shown about each installation; tokens are not even decrypted."""
        summaries = []
        for doc in await self._store.list_docs(COLLECTION, limit):
            data = {k: v for k, v in doc.data.items() if k not in _SECRET_FIELDS}
            data["location_count"] = len(data.get("location_ids") or [])
            summaries.append(InstallationSummary.model_validate(data))
        return summaries

    async def list(self) -> list[Installation]:
        return [self._decode(doc) for doc in await self._store.list_docs(COLLECTION)]

    # Location -> company links ----------------------------------------------------------
    async def link(self, location_id: str, company_id: str, now: float) -> None:
        await self._store.put_doc(LINKS, location_id, {"company_id": company_id, "at": now})

    async def company_of(self, location_id: str) -> str | None:
        doc = await self._store.get_doc(LINKS, location_id)
        return str(doc.data["company_id"]) if doc else None

    async def unlink(self, location_id: str) -> None:
        await self._store.delete_doc(LINKS, location_id)

    # Location data removed on UNINSTALL -------------------------------------------------
    async def delete_location_settings(self, location_id: str) -> bool:
        return await self._store.delete_doc(LOCATION_SETTINGS, location_id)

    # App webhooks handled once ----------------------------------------------------------
    async def claim_webhook(
        self, webhook_id: str, event: str, now: float, *, remembered: float | None = None
    ) -> bool:
        """True for the first delivery of `webhook_id`; False while or after it is handled, or
        only for `remembered` seconds after it was claimed (then it may be claimed again)."""
        record = {"type": event, "at": now}
        if await self._store.swap_doc(APP_WEBHOOKS, webhook_id, 0, record):
            return True
        if remembered is None:
            return False
        doc = await self._store.get_doc(APP_WEBHOOKS, webhook_id)
        if doc is None:  # released meanwhile
            return await self._store.swap_doc(APP_WEBHOOKS, webhook_id, 0, record)
        if now - float(doc.data.get("at", now)) < remembered:
            return False
        return await self._store.swap_doc(APP_WEBHOOKS, webhook_id, doc.rev, record)

    async def release_webhook(self, webhook_id: str) -> None:
        """Handling failed: let GHL's redelivery of the same webhookId be handled again."""
        await self._store.delete_doc(APP_WEBHOOKS, webhook_id)


async def reencrypt_collection(
    store: Store, cipher: TokenCipher, collection: str, fields: tuple[str, ...]
) -> tuple[int, int]:
    """The encrypted `fields` of every document of `collection` encrypted again with the newest
    key, compare-and-swap per document (a concurrent write wins: it used the newest key too).
    Returns (re-encrypted, undecryptable)."""
    done = failed = 0
    for doc in await store.list_docs(collection, REENCRYPT_LIMIT):
        try:
            data = cipher.rotated(doc.data, fields)
        except UndecryptableError:
            failed += 1
            continue
        done += await store.swap_doc(collection, doc.id, doc.rev, data)
    return done, failed


def _undecryptable(doc: Doc) -> Installation:
    """A record no configured key decrypts: no tokens, needs re-install. The OAuth callback's
    new tokens replace it; senders fail with REAUTHORIZATION_NEEDED; never a 500."""
    if doc.id not in _reported_undecryptable:  # not on every read
        _reported_undecryptable.put(doc.id, True)
        log.error(
            "installation cannot be decrypted: treated as needing re-install",
            extra={"installation": doc.id, "reason": UNDECRYPTABLE_REASON},
        )
    data = {k: v for k, v in doc.data.items() if k not in _SECRET_FIELDS}
    return Installation.model_validate(
        {**data, "access_token": "", "needs_reauth": True, "reauth_reason": UNDECRYPTABLE_REASON}
    )
