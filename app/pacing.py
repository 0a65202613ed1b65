"""What Cast pacing and GHL pacing share: one turn per call, from a slot reserved in the store.

A limit of N calls in any W seconds (the strictest reading of Cast's and GHL's limits, a sliding
log) is kept by spacing the calls of one name evenly, `spacing(N, W)` apart, for every bridge
process at once: `Store.reserve_slot` hands out slots (a GCRA: one atomic "next slot" update per
call). Call k and call k+N then leave N spacings apart, which is W plus `JITTER` (how much the
network delay to the other end varies) plus `MAX_LATENESS` (how late a call may leave after its
slot): the other end sees at most N in any W.

`Turns.take` sleeps until the slot and lets the call go if it woke up at most
`MAX_LATENESS / 2` after it (the other half is for its way to the socket) and nothing changed
meanwhile (a block, a slower rate); otherwise the slot is dropped and a new one reserved. A
dropped slot costs one spacing of throughput, never a limit.

With a `horizon`, a call whose slot would be further away than that reserves nothing and is told
when that slot would be (`Later`): a worker should not hold a message that only waits.
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace

from app.store import Store

COLLECTION = "pacing_state"
JITTER = 0.02  # how much the network delay to Cast or GHL may vary
# How late a call may reach the wire after its slot: half for waking up (a call that wakes up
# later than MAX_LATENESS / 2 takes a new slot), half for its way from the pacer to the socket.
MAX_LATENESS = 0.02


def spacing(limit: float, window: float) -> float:
    """Slot spacing for at most `limit` calls in any `window` seconds, whatever the jitter and
    lateness."""
    return (window + JITTER + MAX_LATENESS) / limit


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


# The spacing a name's calls need under its current state, at a time.
type SpacingRule = Callable[[LimitState, float], float]
type Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Turn:
    """The call may leave now; it was paced `interval` after the one before it."""

    interval: float


@dataclass(frozen=True, slots=True)
class Later:
    """No slot within the horizon; the earliest one was at `slot` (not reserved)."""

    slot: float
    interval: float


class PacingRepository:
    """Slots and states of the pacers, in the store. `state` answers from a copy at most
    `state_max_age` seconds old (one store read per name and second instead of one per call):
    another process's slow-down or block reaches this one within that time; this process's own
    is seen at once."""

    def __init__(self, store: Store, state_max_age: float = 1.0) -> None:
        self._store = store
        self._max_age = state_max_age
        self._states: dict[str, tuple[float, LimitState]] = {}

    async def reserve_slot(
        self, name: str, *, now: float, interval: float, horizon: float = math.inf
    ) -> float:
        return await self._store.reserve_slot(name, now=now, interval=interval, horizon=horizon)

    async def move_slot(self, name: str, *, reserved: float, to: float) -> bool:
        return await self._store.move_slot(name, reserved=reserved, to=to)

    async def recent_slots(self, prefix: str, since: float) -> dict[str, float]:
        return await self._store.recent_slots(prefix, since)

    def known_state(self, name: str) -> LimitState:
        """The last state read or written here, without a store round trip."""
        cached = self._states.get(name)
        return cached[1] if cached is not None else LimitState()

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


class Turns:
    """Turns of named limits, reserved in the store (see the module's docstring)."""

    def __init__(
        self,
        repo: PacingRepository,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._sleep = sleep

    async def take(self, name: str, rule: SpacingRule, horizon: float = math.inf) -> Turn | Later:
        lead = 0.0  # how late slots were found: the next one is asked for that much further ahead
        while True:
            state = await self._repo.state(name)
            now = self._clock()
            interval = rule(state, now)
            earliest = max(now + lead, state.blocked_until)
            if earliest - now > horizon:
                return Later(earliest, interval)
            slot = await self._repo.reserve_slot(
                name, now=earliest, interval=interval, horizon=horizon - (earliest - now)
            )
            if slot - now > horizon:
                return Later(slot, interval)
            await sleep_until(slot, self._clock, self._sleep)
            state = self._repo.known_state(name)  # no store round trip between slot and send
            now = self._clock()
            if now - slot <= MAX_LATENESS / 2 and still_open(state, rule, interval, now):
                return Turn(interval)
            lead += max(0.0, now - slot)


async def sleep_until(at: float, clock: Callable[[], float], sleep: Sleep) -> None:
    """Sleep until `at` (at once if it has passed)."""
    if (wait := at - clock()) > 0:
        await sleep(wait)


def still_open(state: LimitState, rule: SpacingRule, interval: float, now: float) -> bool:
    """No block and no slower rate since the slot was reserved at `interval`."""
    return state.blocked_until <= now and rule(state, now) <= interval


class LocalPacingRepository(PacingRepository):
    """Slots and states of one process, in memory: a limit this process does not share."""

    def __init__(self) -> None:
        self._states = {}
        self._slots: dict[str, float] = {}

    async def reserve_slot(
        self, name: str, *, now: float, interval: float, horizon: float = math.inf
    ) -> float:
        last = self._slots.get(name)
        slot = now if last is None else max(now, last + interval)
        if slot - now <= horizon:
            self._slots[name] = slot
        return slot

    async def move_slot(self, name: str, *, reserved: float, to: float) -> bool:
        if self._slots.get(name) != reserved:
            return False
        self._slots[name] = to
        return True

    async def state(self, name: str) -> LimitState:
        return self.known_state(name)

    async def update_state(
        self, name: str, change: Callable[[LimitState], LimitState]
    ) -> LimitState:
        new = change(self.known_state(name))
        self._states[name] = (0.0, new)
        return new

    async def states(self, prefix: str) -> dict[str, LimitState]:
        return {name: state for name, (_, state) in self._states.items() if name.startswith(prefix)}
