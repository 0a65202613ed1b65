"""The only opt-out code touching the store: the suppression list (`optouts`, one document per
location and number), the `dnd` queue of GHL contact updates, and the Cast sync's ledger (which
unsubscribe-list entries were handled, and the lease that lets one process sync at a time)."""

import hashlib

from app.kit.queues import QueueRepository
from app.optouts.schemas import DndTask, OptOut
from app.store import Store

OPTOUTS = "optouts"
SYNC_SEEN = "cast_optout_seen"
SYNC_LEASE = "cast-optout-sync"
DND_QUEUE = "dnd"
MAX_LISTED = 10_000


def _doc_id(location_id: str, phone_e164: str) -> str:
    return f"{location_id}:{phone_e164}"


def entry_id(location_id: str, phone_e164: str) -> str:
    """A short stable name of one opt-out, to remove it without knowing the full number."""
    return hashlib.sha256(_doc_id(location_id, phone_e164).encode()).hexdigest()[:12]


class OptOutList:
    """Numbers each location must not text, keyed by location and E.164 number."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, location_id: str, phone_e164: str) -> OptOut | None:
        doc = await self._store.get_doc(OPTOUTS, _doc_id(location_id, phone_e164))
        return OptOut.model_validate(doc.data) if doc else None

    async def add(self, optout: OptOut) -> bool:
        """True when the number was not on the location's list yet (the first opt-out stays)."""
        doc_id = _doc_id(optout.location_id, optout.phone)
        return await self._store.swap_doc(OPTOUTS, doc_id, 0, optout.model_dump(mode="json"))

    async def remove(self, location_id: str, phone_e164: str) -> OptOut | None:
        """Take the number off the location's list; what was there, or None."""
        found = await self.get(location_id, phone_e164)
        if found is None:
            return None
        deleted = await self._store.delete_doc(OPTOUTS, _doc_id(location_id, phone_e164))
        return found if deleted else None

    async def of_location(self, location_id: str, limit: int = MAX_LISTED) -> list[OptOut]:
        docs = await self._store.list_docs_with_prefix(OPTOUTS, f"{location_id}:", limit)
        found = (OptOut.model_validate(doc.data) for doc in docs)
        return [optout for optout in found if optout.location_id == location_id]

    async def count(self, location_id: str) -> int:
        return await self._store.count_docs(OPTOUTS, f"{location_id}:")


class DndQueue(QueueRepository[DndTask]):
    """Contact DND updates for GHL, each queued once by its id."""

    queue = DND_QUEUE
    model = DndTask

    async def add(self, task: DndTask) -> bool:
        """False when a task with this id was already queued (it is not queued twice)."""
        return await self._enqueue(task.id, task, task.created_at)


class SyncLedger:
    """The Cast sync's durable memory: the unsubscribe-list entries of each Cast key (by its
    identity) already handled, with the locations each was put on, and the named lease that one
    process holds while it syncs. Entries handled before issue 28 are kept under the key's old
    12-digit id, without their locations (`handled_before_locations_were_kept`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def handled(self, key_id: str) -> dict[str, set[str]]:
        """This key's entries handled before, by name, each with the locations it was put on
        (all of them: one id-range read)."""
        docs = await self._store.list_docs_with_prefix(SYNC_SEEN, f"{key_id}|", 10**7)
        return {
            doc.id.removeprefix(f"{key_id}|"): set(doc.data.get("locations", ())) for doc in docs
        }

    async def mark_handled(self, key_id: str, entry: str, locations: set[str], now: float) -> None:
        data = {"at": now, "locations": sorted(locations)}
        await self._store.put_doc(SYNC_SEEN, f"{key_id}|{entry}", data)

    async def handled_before_locations_were_kept(self, legacy_id: str) -> set[str]:
        """Names of the entries handled under the key's old id (the locations of the key then
        got them; which ones was not kept)."""
        docs = await self._store.list_docs_with_prefix(SYNC_SEEN, f"{legacy_id}|", 10**7)
        return {doc.id.removeprefix(f"{legacy_id}|") for doc in docs}

    async def forget_legacy(self, legacy_id: str, entry: str) -> None:
        await self._store.delete_doc(SYNC_SEEN, f"{legacy_id}|{entry}")

    async def hold_lease(self, owner: str, *, now: float, seconds: float) -> bool:
        return await self._store.acquire_lease(SYNC_LEASE, owner, now=now, seconds=seconds)

    async def release_lease(self, owner: str) -> None:
        await self._store.release_lease(SYNC_LEASE, owner)
