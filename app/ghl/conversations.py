"""The GHL conversation of a contact, whose id every inbound message added to GHL must name.

GHL keeps one conversation per contact (docs/ConversationProviders.md): it is looked up
(`GET /conversations/search`), or opened (`POST /conversations/`) when the contact has none,
and its id is kept in a bounded cache so a busy conversation costs no extra GHL call per reply.
The calls are made for the location, so `GHLClient` paces them with its other calls."""

import logging

from app.ghl.client import GHLClient, GHLError
from app.kit.ttl_cache import TTLCache

log = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000
CACHE_TTL_SECONDS = 3600.0
# A create GHL refuses may be a race with another process that opened the conversation first.
CREATE_REFUSED = {400, 409, 422}


class ConversationDirectory:
    def __init__(self, ghl: GHLClient, cache: TTLCache[tuple[str, str], str] | None = None) -> None:
        self._ghl = ghl
        self._cache = cache or TTLCache(CACHE_TTL_SECONDS, max_entries=CACHE_ENTRIES)

    def cached(self, location_id: str, contact_id: str) -> str | None:
        return self._cache.get((location_id, contact_id))

    def forget(self, location_id: str, contact_id: str) -> None:
        """The cached id was refused: the next reply looks the conversation up again."""
        self._cache.pop((location_id, contact_id))

    async def conversation_id(self, token: str, location_id: str, contact_id: str) -> str:
        """The contact's conversation id: cached, found, or a new conversation's."""
        key = (location_id, contact_id)
        found = self._cache.get(key)
        if found is None:
            found = await self._find(token, location_id, contact_id)
        if found is None:
            found = await self._open(token, location_id, contact_id)
        self._cache.put(key, found)
        return found

    async def _find(self, token: str, location_id: str, contact_id: str) -> str | None:
        conversations = await self._ghl.search_conversations(token, location_id, contact_id)
        ours = (c for c in conversations if c.get("id") and c.get("contactId") == contact_id)
        return next((str(c["id"]) for c in ours), None)

    async def _open(self, token: str, location_id: str, contact_id: str) -> str:
        try:
            created = await self._ghl.create_conversation(token, location_id, contact_id)
        except GHLError as exc:
            if exc.status not in CREATE_REFUSED:
                raise
            found = await self._find(token, location_id, contact_id)
            if found is None:
                raise
            return found
        if not created.get("id"):
            raise GHLError("GHL's new conversation has no id", status=None)
        log.info(
            "conversation opened in GHL",
            extra={"location_id": location_id, "contact_id": contact_id},
        )
        return str(created["id"])
