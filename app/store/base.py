"""The storage interface: the only operations the service needs, implemented by two backends.

Work items (the outbox and inbox) live in named queues. An item is `pending` until it is
finished (`done`). A claim leases an item by moving its `due_at` to the lease expiry and giving
it a fresh `lease` token, in one atomic single-document/row update, so the same index
(queue, state, due_at) finds both due work and work whose worker died. Only the holder of the
current token can save or finish the item: a worker whose lease expired and was re-claimed
cannot overwrite the new holder's progress.
"""

import functools
import inspect
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


def new_lease_token() -> str:
    """32 hex digits: unique among leases, not a secret."""
    return uuid.uuid4().hex


PENDING = "pending"
DONE = "done"

# Above every character, so ids starting with a prefix p are the range [p, p + ID_RANGE_END).
ID_RANGE_END = "\U0010ffff"

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def field_name(key: str) -> str:
    """`key` if it is a plain top-level field name (safe to put in a JSON path), else ValueError."""
    if not _FIELD_NAME.fullmatch(key):
        raise ValueError(f"not a field name: {key!r}")
    return key


class StoreUnavailable(Exception):
    """The database cannot be reached or failed: what every operation of every backend raises
    for any failure of its driver (HTTP requests answer it with 503 and Retry-After)."""


def unavailable_on[S: type](
    *driver_errors: type[Exception], describe: Callable[[Exception], str]
) -> Callable[[S], S]:
    """Class decorator for a backend: each of its public coroutine methods (every operation of
    `Store`, including ones added later) raises StoreUnavailable(describe(exc)) instead of any
    of `driver_errors`. One error contract, so callers never see a driver's exception type."""

    def decorate(cls: S) -> S:
        for name, method in inspect.getmembers(cls, inspect.iscoroutinefunction):
            if not name.startswith("_"):
                setattr(cls, name, _translating(method, driver_errors, describe))
        return cls

    return decorate


def _translating(
    method: Callable[..., Any],
    driver_errors: tuple[type[Exception], ...],
    describe: Callable[[Exception], str],
) -> Callable[..., Any]:
    @functools.wraps(method)
    async def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except driver_errors as exc:
            raise StoreUnavailable(describe(exc)) from exc

    return translated


@dataclass(frozen=True, slots=True)
class WorkItem:
    queue: str
    id: str
    state: str
    due_at: float
    lease: str | None
    attempts: int
    data: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """A selection of one queue's items (any state), newest first by (created_at, id).

    `equal`: top-level `data` fields and the value each must have (None: null or absent);
    `since`/`until`: created_at in [since, until); `text`: a case-insensitive substring of at
    least one of `text_fields` (a top-level string field, or `list.field` for that field of any
    element of the list `list`); `before`: the (created_at, id) of the last item of the previous
    page, so the page continues strictly after it. Field names are letters, digits and `_`."""

    equal: tuple[tuple[str, str | None], ...] = ()
    since: float | None = None
    until: float | None = None
    text: str | None = None
    text_fields: tuple[str, ...] = ()
    before: tuple[float, str] | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    rev: int
    data: dict[str, Any]


class Store(Protocol):
    backend: str

    async def start(self) -> None:
        """Connect and create tables/indexes (idempotent)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    # Work items -------------------------------------------------------------------------
    async def enqueue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        """Insert once by id. False (and nothing changed) when the id already exists."""

    async def claim(
        self, queue: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[WorkItem]:
        """Lease up to `limit` pending items due at `now`, oldest first."""

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
        """Write progress and release the lease (reschedule at `due_at`, or finish with DONE).

        False when `lease` is no longer the item's current lease.
        """

    async def extend_lease(self, queue: str, item_id: str, lease: str, until: float) -> bool:
        """Keep a claimed item while it is still being worked on. False if the lease was lost."""

    async def get_item(self, queue: str, item_id: str) -> WorkItem | None: ...

    async def requeue(self, queue: str, item_id: str, data: dict[str, Any], due_at: float) -> bool:
        """Make a finished or pending item pending again, due at `due_at`, without a lease."""

    async def count_items(self, queue: str) -> dict[str, int]:
        """Number of items by state."""

    async def oldest_due(self, queue: str) -> float | None:
        """`due_at` of the oldest pending item, or None."""

    async def list_items(
        self, queue: str, *, key: str, value: str, since: float, limit: int
    ) -> list[WorkItem]:
        """Items (any state) whose top-level `data[key] == value`, created at or after `since`,
        newest first, at most `limit`. `key` is a field name (letters, digits, `_`); the query
        on `location_id` is backed by an index."""

    async def find_items(self, queue: str, query: ItemQuery) -> list[WorkItem]:
        """The items `query` selects, newest first, at most `query.limit`. Indexed: created_at,
        and the equality on `location_id`, `to`, `phone` or `status` with created_at."""

    # Documents with a revision (installations, tokens, per-location settings) ------------
    async def get_doc(self, collection: str, doc_id: str) -> Doc | None: ...

    async def put_doc(self, collection: str, doc_id: str, data: dict[str, Any]) -> Doc:
        """Create or overwrite, bumping the revision."""

    async def swap_doc(
        self, collection: str, doc_id: str, expected_rev: int, data: dict[str, Any]
    ) -> bool:
        """Compare-and-swap: overwrite only if the current revision is `expected_rev`
        (0 = the document must not exist yet)."""

    async def delete_doc(self, collection: str, doc_id: str) -> bool: ...

    async def list_docs(self, collection: str, limit: int = 1000) -> list[Doc]: ...

    async def list_docs_with_prefix(
        self, collection: str, prefix: str, limit: int = 1000
    ) -> list[Doc]:
        """Documents whose id starts with `prefix`, by id, at most `limit` (an id range scan)."""

    async def count_docs(self, collection: str, prefix: str = "") -> int:
        """How many documents' ids start with `prefix`."""

    # Seen ids (webhook replay protection) ---------------------------------------------
    async def mark_seen(self, namespace: str, key: str, now: float) -> bool:
        """True the first time `key` is seen in `namespace`, False afterwards."""

    # Named leases (one refresher per location, one sender per key) -----------------------
    async def acquire_lease(self, name: str, owner: str, *, now: float, seconds: float) -> bool:
        """Take or renew the lease `name` for `owner` unless another owner holds it unexpired."""

    async def release_lease(self, name: str, owner: str) -> None: ...

    # Shared pacing (one rate for all processes) ------------------------------------------
    async def reserve_slot(
        self, name: str, *, now: float, interval: float, horizon: float = math.inf
    ) -> float:
        """The next send time of the pacer `name`: max(now, previous slot + interval), reserved
        only if it is at most `horizon` after `now` (a later one is returned, not reserved).

        Atomic across processes, so slots handed out by all bridge processes are `interval`
        apart (a GCRA / virtual-scheduling rate limiter kept in the database).
        """

    async def move_slot(self, name: str, *, reserved: float, to: float) -> bool:
        """Move the pacer `name`'s last slot from `reserved` to the later `to`, if no other
        slot was reserved after it meanwhile: True when moved. The slots after it are then
        spaced from `to`."""

    async def recent_slots(self, prefix: str, since: float) -> dict[str, float]:
        """The last slot of every pacer named with `prefix` whose last slot is after `since`."""

    # Quotas (at most `limit` uses per sliding window) -------------------------------------
    async def take_quota(self, name: str, *, now: float, window: float, limit: int) -> bool:
        """Record one use of the quota `name` at `now`, unless `limit` uses are already recorded
        after `now - window`: True when recorded. Atomic across processes, so concurrent
        callers never exceed `limit` together; uses older than the window are forgotten."""
