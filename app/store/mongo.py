"""Production store: MongoDB through PyMongo's native async API (`AsyncMongoClient`).

Every operation is a single-document atomic update; no multi-document transactions, so it runs
on a standalone mongod as well as on a replica set. Several bridge processes share one database.
Any driver error (`PyMongoError`) of any operation is raised as `StoreUnavailable`.
"""

import math
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from app.store.base import (
    DONE,
    ID_RANGE_END,
    PENDING,
    Doc,
    ItemQuery,
    WorkItem,
    field_name,
    new_lease_token,
    unavailable_on,
)

DEFAULT_DB = "cast_ghl"


def _item(queue: str, raw: dict[str, Any]) -> WorkItem:
    return WorkItem(
        queue=queue,
        id=raw["_id"],
        state=raw["state"],
        due_at=raw["due_at"],
        lease=raw.get("lease"),
        attempts=raw.get("attempts", 0),
        data=raw.get("data", {}),
        created_at=raw["created_at"],
    )


def _id_prefix(prefix: str) -> dict[str, Any]:
    """Ids starting with `prefix`, as a range on `_id` (uses the primary index, unlike $regex)."""
    return {"_id": {"$gte": prefix, "$lt": prefix + ID_RANGE_END}}


def _item_filter(query: ItemQuery) -> dict[str, Any]:
    """The query as a MongoDB filter (a dotted `list.field` matches any element's field)."""
    clauses: list[dict[str, Any]] = [
        {f"data.{field_name(key)}": value} for key, value in query.equal
    ]
    created: dict[str, float] = {}
    if query.since is not None:
        created["$gte"] = query.since
    if query.until is not None:
        created["$lt"] = query.until
    if created:
        clauses.append({"created_at": created})
    if query.before is not None:
        at, item_id = query.before
        clauses.append(
            {"$or": [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": item_id}}]}
        )
    if query.text and query.text_fields:
        pattern = {"$regex": re.escape(query.text), "$options": "i"}
        paths = [".".join(field_name(part) for part in p.split(".")) for p in query.text_fields]
        clauses.append({"$or": [{f"data.{path}": pattern} for path in paths]})
    return {"$and": clauses} if clauses else {}


def _timeouts(uri: str, timeout_ms: int) -> dict[str, int]:
    """`timeout_ms` for the timeouts the URI does not set itself (its options win)."""
    given = {option.lower() for option in parse_qs(urlsplit(uri).query)}
    defaults = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms}
    return {name: value for name, value in defaults.items() if name.lower() not in given}


def _describe(exc: Exception) -> str:
    """The error's type only: its text names hosts, and `/readyz` shows this."""
    return f"mongodb: {type(exc).__name__}"


@unavailable_on(PyMongoError, describe=_describe)
class MongoStore:
    backend = "mongodb"

    def __init__(self, uri: str, db_name: str | None = None, *, timeout_ms: int = 5000) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri, tz_aware=True, **_timeouts(uri, timeout_ms)
        )
        default = self._client.get_default_database(default=DEFAULT_DB)
        self._db = self._client[db_name] if db_name else default

    def _queue(self, queue: str):
        return self._db[f"queue_{queue}"]

    async def start(self) -> None:
        for name in ("outbound", "inbound", "dnd"):
            await self._queue(name).create_index(
                [("state", ASCENDING), ("due_at", ASCENDING)], name="state_due"
            )
            await self._queue(name).create_index(
                [("data.location_id", ASCENDING), ("created_at", DESCENDING)],
                name="location_created",
            )
            for key in ("to", "phone", "status"):
                await self._queue(name).create_index(
                    [(f"data.{key}", ASCENDING), ("created_at", DESCENDING)],
                    name=f"{key}_created",
                )
            await self._queue(name).create_index([("created_at", DESCENDING)], name="created")
        await self._db["leases"].create_index([("until", ASCENDING)], name="until")

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        await self._db.command("ping")

    # Work items -------------------------------------------------------------------------
    async def enqueue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        item = WorkItem(queue, item_id, PENDING, due_at, None, 0, data, due_at)
        return await self._insert(item)

    async def _insert(self, item: WorkItem) -> bool:
        """One insert_one; False when the id exists."""
        document = {
            "_id": item.id,
            "state": item.state,
            "due_at": item.due_at,
            "lease": item.lease,
            "attempts": item.attempts,
            "data": item.data,
            "created_at": item.created_at,
        }
        try:
            await self._queue(item.queue).insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def claim(
        self, queue: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[WorkItem]:
        claimed: list[WorkItem] = []
        collection = self._queue(queue)
        for _ in range(limit):
            raw = await collection.find_one_and_update(
                {"state": PENDING, "due_at": {"$lte": now}},
                {
                    "$set": {"due_at": now + lease_seconds, "lease": new_lease_token()},
                    "$inc": {"attempts": 1},
                },
                sort=[("due_at", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
            if raw is None:
                break
            claimed.append(_item(queue, raw))
        return claimed

    async def save(
        self,
        queue: str,
        item_id: str,
        lease: str,
        *,
        data: dict[str, Any],
        state: str,
        due_at: float,
    ) -> bool:
        result = await self._queue(queue).update_one(
            {"_id": item_id, "lease": lease},
            {"$set": {"data": data, "state": state, "due_at": due_at, "lease": None}},
        )
        return result.modified_count == 1

    async def extend_lease(self, queue: str, item_id: str, lease: str, until: float) -> bool:
        result = await self._queue(queue).update_one(
            {"_id": item_id, "lease": lease}, {"$set": {"due_at": until}}
        )
        return result.matched_count == 1

    async def get_item(self, queue: str, item_id: str) -> WorkItem | None:
        raw = await self._queue(queue).find_one({"_id": item_id})
        return _item(queue, raw) if raw else None

    async def requeue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        result = await self._queue(queue).update_one(
            {"_id": item_id},
            {"$set": {"data": data, "state": PENDING, "due_at": due_at, "lease": None}},
        )
        return result.matched_count == 1

    async def count_items(self, queue: str) -> dict[str, int]:
        counts = {PENDING: 0, DONE: 0}
        pipeline = [{"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        async for row in await self._queue(queue).aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    async def oldest_due(self, queue: str) -> float | None:
        raw = await self._queue(queue).find_one(
            {"state": PENDING}, sort=[("due_at", ASCENDING)], projection={"due_at": 1}
        )
        return raw["due_at"] if raw else None

    async def list_items(
        self, queue: str, *, key: str, value: str, since: float, limit: int
    ) -> list[WorkItem]:
        cursor = (
            self._queue(queue)
            .find({f"data.{field_name(key)}": value, "created_at": {"$gte": since}})
            .sort("created_at", DESCENDING)
            .limit(limit)
        )
        return [_item(queue, raw) async for raw in cursor]

    async def find_items(self, queue: str, query: ItemQuery) -> list[WorkItem]:
        cursor = (
            self._queue(queue)
            .find(_item_filter(query))
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(query.limit)
        )
        return [_item(queue, raw) async for raw in cursor]

    # Documents --------------------------------------------------------------------------
    async def get_doc(self, collection: str, doc_id: str) -> Doc | None:
        raw = await self._db[collection].find_one({"_id": doc_id})
        return Doc(doc_id, raw["rev"], raw["data"]) if raw else None

    async def put_doc(self, collection: str, doc_id: str, data: dict[str, Any]) -> Doc:
        raw = await self._db[collection].find_one_and_update(
            {"_id": doc_id},
            {"$set": {"data": data}, "$inc": {"rev": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return Doc(doc_id, raw["rev"], data)

    async def swap_doc(
        self, collection: str, doc_id: str, expected_rev: int, data: dict[str, Any]
    ) -> bool:
        if expected_rev == 0:
            try:
                await self._db[collection].insert_one({"_id": doc_id, "rev": 1, "data": data})
            except DuplicateKeyError:
                return False
            return True
        result = await self._db[collection].update_one(
            {"_id": doc_id, "rev": expected_rev}, {"$set": {"data": data}, "$inc": {"rev": 1}}
        )
        return result.modified_count == 1

    async def delete_doc(self, collection: str, doc_id: str) -> bool:
        result = await self._db[collection].delete_one({"_id": doc_id})
        return result.deleted_count == 1

    async def list_docs(self, collection: str, limit: int = 1000) -> list[Doc]:
        cursor = self._db[collection].find({}).sort("_id", ASCENDING).limit(limit)
        return [Doc(raw["_id"], raw["rev"], raw["data"]) async for raw in cursor]

    async def list_docs_with_prefix(
        self, collection: str, prefix: str, limit: int = 1000
    ) -> list[Doc]:
        cursor = self._db[collection].find(_id_prefix(prefix)).sort("_id", ASCENDING).limit(limit)
        return [Doc(raw["_id"], raw["rev"], raw["data"]) async for raw in cursor]

    async def count_docs(self, collection: str, prefix: str = "") -> int:
        return await self._db[collection].count_documents(_id_prefix(prefix))

    # Seen ids ---------------------------------------------------------------------------
    async def mark_seen(self, namespace: str, key: str, now: float) -> bool:
        try:
            await self._db["seen"].insert_one({"_id": f"{namespace}:{key}", "at": now})
        except DuplicateKeyError:
            return False
        return True

    # Named leases -----------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, *, now: float, seconds: float) -> bool:
        try:
            await self._db["leases"].update_one(
                {"_id": name, "$or": [{"owner": owner}, {"until": {"$lte": now}}]},
                {"$set": {"owner": owner, "until": now + seconds}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        await self._db["leases"].delete_one({"_id": name, "owner": owner})

    # Shared pacing ----------------------------------------------------------------------
    async def reserve_slot(
        self, name: str, *, now: float, interval: float, horizon: float = math.inf
    ) -> float:
        """One conditional update, no compare-and-swap (which many concurrent senders of one
        key would retry round after round): a busy pacer's slot moves on by `interval`
        (`$inc`), an idle one's is set to `now`; a new one is inserted."""
        pacing = self._db["pacing"]
        busy: dict[str, Any] = {"$gt": now - interval}
        if horizon != math.inf:
            busy["$lte"] = now + horizon - interval
        while True:
            moved = await pacing.find_one_and_update(
                {"_id": name, "slot": busy},
                {"$inc": {"slot": interval}},
                return_document=ReturnDocument.AFTER,
            )
            if moved is not None:
                return moved["slot"]
            idle = {"_id": name, "slot": {"$lte": now - interval}}
            if await pacing.find_one_and_update(idle, {"$set": {"slot": now}}) is not None:
                return now
            current = await pacing.find_one({"_id": name})
            if current is None:
                try:
                    await pacing.insert_one({"_id": name, "slot": now})
                except DuplicateKeyError:
                    continue
                return now
            if current["slot"] + interval - now > horizon:
                return current["slot"] + interval  # beyond the horizon: not reserved
            # the slot changed between the two updates: try again

    async def move_slot(self, name: str, *, reserved: float, to: float) -> bool:
        moved = await self._db["pacing"].update_one(
            {"_id": name, "slot": reserved}, {"$set": {"slot": to}}
        )
        return moved.modified_count == 1

    async def recent_slots(self, prefix: str, since: float) -> dict[str, float]:
        found = self._db["pacing"].find({**_id_prefix(prefix), "slot": {"$gt": since}})
        return {doc["_id"]: doc["slot"] async for doc in found}

    # Quotas -----------------------------------------------------------------------------
    async def take_quota(self, name: str, *, now: float, window: float, limit: int) -> bool:
        """One document per quota with the times of its uses: expired ones are pulled, then a
        use is pushed only while the array has fewer than `limit` entries (one atomic update;
        when the document exists but is full, the upsert's insert fails on its _id)."""
        if limit < 1:
            return False
        quotas = self._db["quotas"]
        await quotas.update_one({"_id": name}, {"$pull": {"uses": {"$lte": now - window}}})
        try:
            await quotas.update_one(
                {"_id": name, f"uses.{limit - 1}": {"$exists": False}},
                {"$push": {"uses": now}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True
