"""Embedded single-node store: one SQLite file under DATA_DIR, WAL mode.

All statements run on one dedicated thread with one connection, so the event loop never blocks
on disk. Several processes on one host may share the file: every write is a single statement in
its own transaction, and SQLite's file lock serialises them (busy_timeout waits for it), except
that inserts of new work items are group-committed: while one batch is being written, the next
collects, and each batch is one transaction (one hand-off to the thread and one commit for a
burst of webhooks instead of one each; a failed batch fails every insert in it, so nothing is
acknowledged that was not committed).
Any driver error (`sqlite3.Error`: locked past busy_timeout, disk full, I/O error, a corrupt
file) of any operation is raised as `StoreUnavailable`, as is any use of a closed store.
"""

import asyncio
import functools
import json
import math
import os
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydantic_core

from app.store.base import (
    DONE,
    ID_RANGE_END,
    PENDING,
    Doc,
    ItemQuery,
    StoreUnavailable,
    WorkItem,
    field_name,
    new_lease_token,
    unavailable_on,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    queue TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, due_at REAL NOT NULL,
    lease TEXT, attempts INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (queue, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_due ON items (queue, state, due_at);
CREATE INDEX IF NOT EXISTS items_location
    ON items (queue, json_extract(data, '$.location_id'), created_at);
CREATE INDEX IF NOT EXISTS items_created ON items (queue, created_at);
CREATE INDEX IF NOT EXISTS items_to ON items (queue, json_extract(data, '$.to'), created_at);
CREATE INDEX IF NOT EXISTS items_phone
    ON items (queue, json_extract(data, '$.phone'), created_at);
CREATE INDEX IF NOT EXISTS items_status
    ON items (queue, json_extract(data, '$.status'), created_at);
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL, id TEXT NOT NULL, rev INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (
    namespace TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pacing (name TEXT PRIMARY KEY, slot REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quota_uses (name TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS quota_uses_name_at ON quota_uses (name, at);
"""

_ITEM_COLUMNS = "queue, id, state, due_at, lease, attempts, data, created_at"
_INSERT_ITEM = (
    "INSERT OR IGNORE INTO items (queue, id, state, due_at, lease, attempts, data, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _item(row: tuple[Any, ...]) -> WorkItem:
    queue, item_id, state, due_at, lease, attempts, data, created_at = row
    return WorkItem(queue, item_id, state, due_at, lease, attempts, json.loads(data), created_at)


def _dump(data: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII kept (pydantic-core's encoder: a quarter of json.dumps' time)."""
    return pydantic_core.to_json(data).decode()


def _insert_items(c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[bool]:
    """INSERT OR IGNORE each row, all in one transaction: True for each row inserted."""
    if len(rows) == 1:
        return [c.execute(_INSERT_ITEM, rows[0]).rowcount == 1]
    c.execute("BEGIN IMMEDIATE")
    try:
        inserted = [c.execute(_INSERT_ITEM, row).rowcount == 1 for row in rows]
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    return inserted


class _GroupCommit:
    """Work-item inserts, written in batches by the store's thread: the first insert of a burst
    is written at once, and the ones that arrive meanwhile are written together next."""

    def __init__(self, store: "SQLiteStore") -> None:
        self._store = store
        self._rows: list[tuple[Any, ...]] = []
        self._waiters: list[asyncio.Future[bool]] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # referenced while it runs

    async def insert(self, row: tuple[Any, ...]) -> bool:
        waiter = asyncio.get_running_loop().create_future()
        self._rows.append(row)
        self._waiters.append(waiter)
        if not self._writing:
            self._writing = True
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return await waiter

    async def _write(self) -> None:
        try:
            while self._rows:
                rows, waiters = self._rows, self._waiters
                self._rows, self._waiters = [], []
                try:
                    inserted = await self._store._run(lambda c, rows=rows: _insert_items(c, rows))
                except Exception as exc:
                    _settle(waiters, exc)
                    continue
                except BaseException:  # cancelled (shutdown): no answer, nothing acknowledged
                    _settle(waiters, None)
                    raise
                _settle(waiters, inserted)
        finally:
            self._writing = False
            _settle(self._waiters, None)
            self._rows, self._waiters = [], []


def _settle(waiters: list[asyncio.Future[bool]], outcome: list[bool] | Exception | None) -> None:
    """Each waiter's result, or all fail with one exception, or all cancelled (None)."""
    for index, waiter in enumerate(waiters):
        if waiter.done():
            continue
        if outcome is None:
            waiter.cancel()
        elif isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome[index])


def _describe(exc: Exception) -> str:
    return f"sqlite: {exc}"


@unavailable_on(sqlite3.Error, describe=_describe)
class SQLiteStore:
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._inserts = _GroupCommit(self)

    async def _run[T](self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._in_thread(functools.partial(self._call, fn))

    async def _in_thread[T](self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable("sqlite store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _call[T](self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable("sqlite store is not open")
        return fn(self._conn)

    async def _changes_one(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run one write statement; True when it changed exactly one row."""
        return await self._run(lambda c: c.execute(sql, params).rowcount == 1)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(self.path)
        conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def start(self) -> None:
        await self._in_thread(self._open)

    async def close(self) -> None:
        """Idempotent."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._closed:
            return
        self._closed = True  # refuse new operations; those already queued run first
        await asyncio.get_running_loop().run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        """Reads a table, so a file whose schema cannot be read does not pass."""
        await self._run(lambda c: c.execute("SELECT 1 FROM leases LIMIT 1").fetchall())

    # Work items -------------------------------------------------------------------------
    async def enqueue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        row = (queue, item_id, PENDING, due_at, None, 0, _dump(data), due_at)
        return await self._inserts.insert(row)

    async def claim(
        self, queue: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[WorkItem]:
        def _claim(c: sqlite3.Connection) -> list[WorkItem]:
            token = new_lease_token()
            rows = c.execute(
                f"UPDATE items SET due_at = ?, lease = ? || ':' || id, attempts = attempts + 1 "
                f"WHERE queue = ? AND id IN (SELECT id FROM items WHERE queue = ? AND state = ? "
                f"AND due_at <= ? ORDER BY due_at LIMIT ?) RETURNING {_ITEM_COLUMNS}",
                (now + lease_seconds, token, queue, queue, PENDING, now, limit),
            ).fetchall()
            return sorted((_item(row) for row in rows), key=lambda item: item.created_at)

        return await self._run(_claim)

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
        payload = _dump(data)
        return await self._changes_one(
            "UPDATE items SET data = ?, state = ?, due_at = ?, lease = NULL "
            "WHERE queue = ? AND id = ? AND lease = ?",
            (payload, state, due_at, queue, item_id, lease),
        )

    async def extend_lease(self, queue: str, item_id: str, lease: str, until: float) -> bool:
        return await self._changes_one(
            "UPDATE items SET due_at = ? WHERE queue = ? AND id = ? AND lease = ?",
            (until, queue, item_id, lease),
        )

    async def get_item(self, queue: str, item_id: str) -> WorkItem | None:
        def _get(c: sqlite3.Connection) -> WorkItem | None:
            row = c.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE queue = ? AND id = ?",
                (queue, item_id),
            ).fetchone()
            return _item(row) if row else None

        return await self._run(_get)

    async def requeue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        payload = _dump(data)
        return await self._changes_one(
            "UPDATE items SET data = ?, state = ?, due_at = ?, lease = NULL "
            "WHERE queue = ? AND id = ?",
            (payload, PENDING, due_at, queue, item_id),
        )

    async def count_items(self, queue: str) -> dict[str, int]:
        def _count(c: sqlite3.Connection) -> dict[str, int]:
            rows = c.execute(
                "SELECT state, COUNT(*) FROM items WHERE queue = ? GROUP BY state", (queue,)
            ).fetchall()
            counts = {PENDING: 0, DONE: 0}
            counts.update(dict(rows))
            return counts

        return await self._run(_count)

    async def oldest_due(self, queue: str) -> float | None:
        def _oldest(c: sqlite3.Connection) -> float | None:
            row = c.execute(
                "SELECT MIN(due_at) FROM items WHERE queue = ? AND state = ?", (queue, PENDING)
            ).fetchone()
            return row[0]

        return await self._run(_oldest)

    async def list_items(
        self, queue: str, *, key: str, value: str, since: float, limit: int
    ) -> list[WorkItem]:
        # The JSON path is written into the SQL (checked by field_name) so that the query on
        # location_id matches the expression index items_location.
        path = f"$.{field_name(key)}"

        def _list(c: sqlite3.Connection) -> list[WorkItem]:
            rows = c.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE queue = ? "
                f"AND json_extract(data, '{path}') = ? AND created_at >= ? "
                f"ORDER BY created_at DESC LIMIT ?",
                (queue, value, since, limit),
            ).fetchall()
            return [_item(row) for row in rows]

        return await self._run(_list)

    async def find_items(self, queue: str, query: ItemQuery) -> list[WorkItem]:
        where, params = _item_conditions(query)

        def _find(c: sqlite3.Connection) -> list[WorkItem]:
            rows = c.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE queue = ? {where} "
                f"ORDER BY created_at DESC, id DESC LIMIT ?",
                (queue, *params, query.limit),
            ).fetchall()
            return [_item(row) for row in rows]

        return await self._run(_find)

    # Documents --------------------------------------------------------------------------
    async def get_doc(self, collection: str, doc_id: str) -> Doc | None:
        def _get(c: sqlite3.Connection) -> Doc | None:
            row = c.execute(
                "SELECT rev, data FROM docs WHERE collection = ? AND id = ?", (collection, doc_id)
            ).fetchone()
            return Doc(doc_id, row[0], json.loads(row[1])) if row else None

        return await self._run(_get)

    async def put_doc(self, collection: str, doc_id: str, data: dict[str, Any]) -> Doc:
        payload = _dump(data)

        def _put(c: sqlite3.Connection) -> Doc:
            (rev,) = c.execute(
                "INSERT INTO docs (collection, id, rev, data) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (collection, id) DO UPDATE SET rev = rev + 1, data = excluded.data "
                "RETURNING rev",
                (collection, doc_id, payload),
            ).fetchone()
            return Doc(doc_id, rev, data)

        return await self._run(_put)

    async def swap_doc(
        self, collection: str, doc_id: str, expected_rev: int, data: dict[str, Any]
    ) -> bool:
        payload = _dump(data)
        if expected_rev == 0:
            return await self._changes_one(
                "INSERT OR IGNORE INTO docs (collection, id, rev, data) VALUES (?, ?, 1, ?)",
                (collection, doc_id, payload),
            )
        return await self._changes_one(
            "UPDATE docs SET rev = rev + 1, data = ? WHERE collection = ? AND id = ? AND rev = ?",
            (payload, collection, doc_id, expected_rev),
        )

    async def delete_doc(self, collection: str, doc_id: str) -> bool:
        return await self._changes_one(
            "DELETE FROM docs WHERE collection = ? AND id = ?", (collection, doc_id)
        )

    async def list_docs(self, collection: str, limit: int = 1000) -> list[Doc]:
        def _list(c: sqlite3.Connection) -> list[Doc]:
            rows = c.execute(
                "SELECT id, rev, data FROM docs WHERE collection = ? ORDER BY id LIMIT ?",
                (collection, limit),
            ).fetchall()
            return [Doc(row[0], row[1], json.loads(row[2])) for row in rows]

        return await self._run(_list)

    async def list_docs_with_prefix(
        self, collection: str, prefix: str, limit: int = 1000
    ) -> list[Doc]:
        def _list(c: sqlite3.Connection) -> list[Doc]:
            rows = c.execute(
                "SELECT id, rev, data FROM docs WHERE collection = ? AND id >= ? AND id < ? "
                "ORDER BY id LIMIT ?",
                (collection, prefix, prefix + ID_RANGE_END, limit),
            ).fetchall()
            return [Doc(row[0], row[1], json.loads(row[2])) for row in rows]

        return await self._run(_list)

    async def count_docs(self, collection: str, prefix: str = "") -> int:
        def _count(c: sqlite3.Connection) -> int:
            (count,) = c.execute(
                "SELECT COUNT(*) FROM docs WHERE collection = ? AND id >= ? AND id < ?",
                (collection, prefix, prefix + ID_RANGE_END),
            ).fetchone()
            return count

        return await self._run(_count)

    # Seen ids ---------------------------------------------------------------------------
    async def mark_seen(self, namespace: str, key: str, now: float) -> bool:
        return await self._changes_one(
            "INSERT OR IGNORE INTO seen (namespace, key, at) VALUES (?, ?, ?)",
            (namespace, key, now),
        )

    # Named leases -----------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, *, now: float, seconds: float) -> bool:
        return await self._changes_one(
            "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.owner = excluded.owner OR leases.until <= ?",
            (name, owner, now + seconds, now),
        )

    async def release_lease(self, name: str, owner: str) -> None:
        await self._run(
            lambda c: c.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
        )

    # Shared pacing ----------------------------------------------------------------------
    async def reserve_slot(
        self, name: str, *, now: float, interval: float, horizon: float = math.inf
    ) -> float:
        def _reserve(c: sqlite3.Connection) -> float:
            reserved = c.execute(
                "INSERT INTO pacing (name, slot) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET slot = max(?, pacing.slot + ?) WHERE max(?, pacing.slot + ?) <= ? "
                "RETURNING slot",
                (name, now, now, interval, now, interval, now + horizon),
            ).fetchone()
            if reserved is not None:
                return reserved[0]
            (last,) = c.execute("SELECT slot FROM pacing WHERE name = ?", (name,)).fetchone()
            return max(now, last + interval)  # beyond the horizon: not reserved

        return await self._run(_reserve)

    async def move_slot(self, name: str, *, reserved: float, to: float) -> bool:
        return await self._changes_one(
            "UPDATE pacing SET slot = ? WHERE name = ? AND slot = ?", (to, name, reserved)
        )

    async def recent_slots(self, prefix: str, since: float) -> dict[str, float]:
        def _recent(c: sqlite3.Connection) -> dict[str, float]:
            rows = c.execute(
                "SELECT name, slot FROM pacing WHERE name >= ? AND name < ? AND slot > ?",
                (prefix, prefix + ID_RANGE_END, since),
            ).fetchall()
            return dict(rows)

        return await self._run(_recent)

    # Quotas -----------------------------------------------------------------------------
    async def take_quota(self, name: str, *, now: float, window: float, limit: int) -> bool:
        def _take(c: sqlite3.Connection) -> bool:
            since = now - window
            c.execute("DELETE FROM quota_uses WHERE name = ? AND at <= ?", (name, since))
            # One statement: the count and the insert happen under one write lock.
            return (
                c.execute(
                    "INSERT INTO quota_uses (name, at) SELECT ?, ? WHERE "
                    "(SELECT COUNT(*) FROM quota_uses WHERE name = ? AND at > ?) < ?",
                    (name, now, name, since, limit),
                ).rowcount
                == 1
            )

        return await self._run(_take)


def _item_conditions(query: ItemQuery) -> tuple[str, list[Any]]:
    """`AND ...` conditions and their parameters. JSON paths are written into the SQL (checked
    by field_name) so that the equalities match the expression indexes."""
    conditions: list[str] = []
    params: list[Any] = []
    for key, value in query.equal:
        conditions.append(f"json_extract(data, '$.{field_name(key)}') IS ?")
        params.append(value)
    if query.since is not None:
        conditions.append("created_at >= ?")
        params.append(query.since)
    if query.until is not None:
        conditions.append("created_at < ?")
        params.append(query.until)
    if query.before is not None:
        conditions.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params.extend([query.before[0], query.before[0], query.before[1]])
    if query.text and query.text_fields:
        text = query.text.lower()
        if not _JSON_ESCAPED.search(text):
            # A quick pass over the raw document first: most rows fail it without being parsed.
            conditions.append("data LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escaped(text)}%")
        matches = [_text_match(path) for path in query.text_fields]
        conditions.append(f"({' OR '.join(matches)})")
        params.extend([text] * len(matches))
    return "".join(f" AND {condition}" for condition in conditions), params


# Characters JSON writes escaped: a text with one is not found as is in the raw document.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f]')


def _like_escaped(text: str) -> str:
    """`text` as a literal in a LIKE pattern (ASCII case-insensitive, like the exact test)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_match(path: str) -> str:
    """A condition, with one parameter (the lower-cased text), true when the field at `path`
    (`field` or `list.field`) contains the text, ignoring ASCII case."""
    outer, _, inner = path.partition(".")
    if not inner:
        return f"instr(lower(json_extract(data, '$.{field_name(outer)}')), ?) > 0"
    return (
        f"EXISTS (SELECT 1 FROM json_each(data, '$.{field_name(outer)}') "
        f"WHERE instr(lower(json_extract(value, '$.{field_name(inner)}')), ?) > 0)"
    )


def _private_file(path: Path) -> None:
    """The database holds tokens and phone numbers: owner-only (0600), created so, never
    world-readable even for a moment; an older, wider file is tightened. SQLite creates the
    -wal and -shm files with the database file's permissions."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
