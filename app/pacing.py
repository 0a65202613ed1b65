"""What Cast pacing and GHL pacing have in common.

- `PacingRepository`: the cluster-wide side, in the store. `reserve_slot` hands out send times
  `interval` apart for one name across every bridge process (a GCRA kept in the database);
  `reserve_in_log` / `move_in_log` keep the last send times of a name instead (a sliding log:
  at most `limit` in any `window`), so a late send delays only the send `limit` after it;
  `state` / `update_state` keep a small document per name (an adapted rate, a block until some
  time). Logs and states change by compare-and-swap, so two processes never lose an update.
- `SlidingWindow`: the per-process side: at most `limit` events in any `window` seconds.
- `sleep_until`: wait for a slot without a timer's usual millisecond of lateness.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from app.store import Store

COLLECTION = "pacing_state"
LOG_COLLECTION = "pacing_log"


@dataclass(frozen=True, slots=True)
class LogShape:
    """At most `limit` send times in any `window` seconds, each at least `spacing` after the
    one before it."""

    limit: int
    window: float
    spacing: float


def next_time(times: list[float], now: float, shape: LogShape) -> float:
    """The earliest time from `now` that `shape` allows after `times` (sorted, all earlier)."""
    at = max(now, times[-1] + shape.spacing) if times else now
    if len(times) >= shape.limit:
        at = max(at, times[-shape.limit] + shape.window)
    return at


def fits(times: list[float], at: float, shape: LogShape) -> bool:
    """True when the log with `at` added still has at most `limit` times in any `window`."""
    merged = sorted([*times, at])
    n = shape.limit
    return all(merged[i + n] - merged[i] >= shape.window for i in range(len(merged) - n))


@dataclass(frozen=True, slots=True)
class LimitState:
    """What the cluster learnt about one limit: an adapted rate (None: the configured one), the
    rate that drew the last 429 minus one (`ceiling`), when the rate last changed, and a block
    (Retry-After, an exhausted budget) until `blocked_until`."""

    rate: float | None = None
    ceiling: float | None = None
    changed_at: float = 0.0
    blocked_until: float = 0.0

    def blocked(self, until: float) -> "LimitState":
        return replace(self, blocked_until=max(self.blocked_until, until))


EARLY_WAKEUP = 0.002


async def sleep_until(at: float, clock: Callable[[], float]) -> None:
    """Sleep, then yield to the loop for the last few ms: a timer wakes up a ms or more late."""
    delay = at - clock() - EARLY_WAKEUP
    if delay > 0:
        await asyncio.sleep(delay)
    while clock() < at:  # noqa: ASYNC110 (a clock, not an event)
        await asyncio.sleep(0)


class PacingRepository:
    """`state` answers from a copy at most `state_max_age` seconds old (one store read per name
    and second instead of one per call): another process's slow-down or block reaches this one
    within that time; this process's own is seen at once."""

    def __init__(self, store: Store, state_max_age: float = 1.0) -> None:
        self._store = store
        self._max_age = state_max_age
        self._states: dict[str, tuple[float, LimitState]] = {}

    async def reserve_slot(self, name: str, *, now: float, interval: float) -> float:
        return await self._store.reserve_slot(name, now=now, interval=interval)

    async def reserve_in_log(self, name: str, *, now: float, shape: LogShape) -> float:
        """Reserve the next send time of `name` in its log (times that can no longer share a
        window with a new one are forgotten)."""

        def reserve(times: list[float]) -> tuple[list[float], float]:
            kept = [t for t in times if t > now - shape.window]
            at = next_time(kept, now, shape)
            return [*kept, at], at

        return await self._change_log(name, reserve)

    async def move_in_log(
        self, name: str, at: float, to: float, shape: LogShape, *, force: bool = False
    ) -> bool:
        """Move the send time `at` of `name` later, to `to`; unless `force`d, only if the log
        still fits `shape` then (False: nothing changed)."""

        def move(times: list[float]) -> tuple[list[float] | None, bool]:
            rest = list(times)
            if at in rest:
                rest.remove(at)
            if not force and not fits(rest, to, shape):
                return None, False
            return sorted([*rest, to]), True

        return await self._change_log(name, move)

    async def _change_log[T](
        self, name: str, change: Callable[[list[float]], tuple[list[float] | None, T]]
    ) -> T:
        while True:
            doc = await self._store.get_doc(LOG_COLLECTION, name)
            times: list[float] = doc.data["times"] if doc is not None else []
            new, result = change(times)
            if new is None:
                return result
            rev = doc.rev if doc is not None else 0
            if await self._store.swap_doc(LOG_COLLECTION, name, rev, {"times": new}):
                return result

    async def state(self, name: str) -> LimitState:
        read_at = time.monotonic()
        cached = self._states.get(name)
        if cached is not None and read_at - cached[0] < self._max_age:
            return cached[1]
        doc = await self._store.get_doc(COLLECTION, name)
        state = LimitState(**doc.data) if doc is not None else LimitState()
        self._states[name] = (read_at, state)
        return state

    async def update_state(
        self, name: str, change: Callable[[LimitState], LimitState]
    ) -> LimitState:
        """Apply `change` to the current state atomically (retried on a concurrent write)."""
        while True:
            doc = await self._store.get_doc(COLLECTION, name)
            current = LimitState(**doc.data) if doc is not None else LimitState()
            new = change(current)
            if new == current:
                self._states[name] = (time.monotonic(), current)
                return current
            rev = doc.rev if doc is not None else 0
            if await self._store.swap_doc(COLLECTION, name, rev, asdict(new)):
                self._states[name] = (time.monotonic(), new)
                return new

    async def states(self, prefix: str) -> dict[str, LimitState]:
        docs = await self._store.list_docs(COLLECTION)
        return {doc.id: LimitState(**doc.data) for doc in docs if doc.id.startswith(prefix)}


class SlidingWindow:
    """At most `limit` events in any `window` seconds, in this process (a sliding log)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window = max(1, limit), window
        self._clock = clock
        self._times: deque[float] = deque()

    def delay(self) -> float:
        """Seconds until one more event fits (0: now)."""
        now = self._clock()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def take(self) -> None:
        """Record an event now; call only when `delay()` is 0 (no await in between)."""
        self._times.append(self._clock())
