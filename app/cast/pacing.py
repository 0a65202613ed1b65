"""Pacing at Cast's limits so bulk sends never provoke 429s, and slowing down when they do.

Per API key, for the whole cluster (Cast's per-key limit, whose algorithm is undocumented: the
strictest plausible one is a sliding log, at most R sends in ANY 1-s interval): the store keeps
each key's recent send times (a sliding log changed by compare-and-swap, `reserve_in_log`: no
lock that could die with its process). A time in the log is when the send's request left (its
body written: httpx's trace hook, `left`), or, until the send says so, the latest it may leave
(its gate + `MAX_DEPARTURE`). A send takes the next time at which at most R of the key's times
fall in any WINDOW, WINDOW = 1 s + `JITTER` (how much the network delay to Cast may vary) +
`SLACK` + `MAX_DEPARTURE`: its gate opens at least 1 s + JITTER + SLACK after the send R before
it left. It is let go `LEAD` before its gate, so its request is built and at the connection when
the gate opens, and its body is written then (`PacedDeparture.ready`, awaited by the client's
trace hook): it leaves within a ms of its gate, and Cast sees send k and send k+R more than 1 s
apart whatever the jitter, never R+1 sends in one second. A send that left later than its log
time (a stall on the way out) moves it later at once, so the send R after it waits for it; one
that woke up more than `MAX_SLOT_LATENESS` late first moves its time (`move_in_log`, only while
the log still fits, else it takes a new time). The cost is JITTER + SLACK + about a ms per R
sends: ~97.5 % of R; a late send delays only the send R after it, not every later one (a single
next-slot counter would push them all back).

Adaptive: a 429 for a key slows that key down for the cluster (state in the store):
multiplicative decrease (x0.8, at least one step), a block for Retry-After, and a slow recovery
(+1/s per `RECOVERY_STEP_SECONDS`) up to `cast_rate_per_key`, but not above the rate that drew
the 429 for `CEILING_HOLD_SECONDS`, so a key whose real limit is lower settles instead of
probing it every minute.

Per process (Cast's per-IP limit, shared by sends and receipt polls): at most `ip_rate`
requests in any WINDOW, sends first. Keys are identified by their identity (app/cast/keys.py),
never by the key.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.cast.keys import key_fingerprint, label_of
from app.pacing import LimitState, LogShape, PacingRepository, SlidingWindow, sleep_until
from app.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

POLL_YIELD_SECONDS = 0.02
JITTER = 0.02
# Delays beyond the network's jitter between a request leaving and Cast stamping it: the
# receiving end's own scheduling (a few ms on a busy machine, measured at the fake).
SLACK = 0.005
# A send that wakes up later than this after its let-go time (a busy event loop, a full per-IP
# budget) takes a new time: a late send could land within 1 s of the send R after it.
MAX_SLOT_LATENESS = 0.004
MAX_MOVES = 3  # a send whose time moved later this often (a slow store) takes a new one
# A send is let go LEAD before its gate, so that its request is built and at the connection
# when the gate opens (`PacedDeparture.ready`); it leaves as the gate opens, not a few ms after.
LEAD = 0.004
# From its gate to the request's body written: until the send reports it (`left`), its time in
# the log is its gate plus this, the latest it may leave.
SEND_PATH = 0.004
MAX_DEPARTURE = MAX_SLOT_LATENESS + SEND_PATH
WINDOW = 1.0 + JITTER + SLACK + MAX_DEPARTURE
CATCH_UP = 0.1
DECREASE = 0.8
RECOVERY_STEP_SECONDS = 60.0
CEILING_HOLD_SECONDS = 3600.0
DEFAULT_RETRY_AFTER = 1.0
KEY_PREFIX = "cast-key:"
LEGACY_ID_LENGTH = 12  # states named by 12 hex digits of SHA-256 of the key (before issue 28)
# Sends of one key that wait in this process at once, in seconds of its rate; more come back
# later (`defer_until`) so they do not hold the worker's slots that receipt polls and status
# reports need.
BACKLOG_SECONDS = 2.0
RETURN_AHEAD_SECONDS = 1.0  # a deferred send comes back while 1 s of sends still waits


@dataclass(frozen=True, slots=True)
class Ticket:
    """A send let go: its key's pacer name, the rate it was paced at, its time in the key's
    log (moved there if it was late: the latest it may leave) and the log's shape at that rate."""

    name: str
    rate: float
    slot: float
    shape: LogShape

    @property
    def gate(self) -> float:
        """The earliest its request may leave."""
        return self.slot - MAX_DEPARTURE


class PacedDeparture:
    """A paced send's request on its way out (the Cast client's `Departure`): it waits at the
    connection for its gate, then reports when it left."""

    def __init__(self, pacer: "CastPacer", ticket: Ticket) -> None:
        self._pacer = pacer
        self.ticket = ticket

    async def ready(self) -> None:
        await sleep_until(self.ticket.gate, self._pacer.clock)

    async def left(self) -> None:
        await self._pacer.left(self.ticket)


def log_shape(rate: float) -> LogShape:
    """The key's log at `rate` msg/s: `ceil(rate)` sends in any WINDOW (stretched for a rate
    that is not whole), spaced at least `CATCH_UP` less than evenly so that the sends after a
    late one, whose own sends a second back were on time, go at their time again."""
    limit = max(1, math.ceil(rate))
    window = WINDOW * limit / rate
    return LogShape(limit, window, window / limit * (1 - CATCH_UP))


def current_rate(state: LimitState, configured: float, now: float) -> float:
    """The key's rate at `now`: the adapted one plus its recovery, capped."""
    if state.rate is None:
        return configured
    elapsed = max(0.0, now - state.changed_at)
    ceiling = (state.ceiling or configured) + elapsed // CEILING_HOLD_SECONDS
    return min(configured, ceiling, state.rate + elapsed // RECOVERY_STEP_SECONDS)


def after_rate_limited(
    state: LimitState, configured: float, now: float, paced_at: float, retry_after: float | None
) -> LimitState:
    """The state after a 429 for a send paced at `paced_at` msg/s."""
    blocked = state.blocked(now + (retry_after if retry_after is not None else DEFAULT_RETRY_AFTER))
    rate = current_rate(state, configured, now)
    if paced_at > rate:  # sent before the last slow-down: that 429 was already answered
        return blocked
    slower = max(1.0, min(rate - 1.0, math.floor(rate * DECREASE)))
    return replace(blocked, rate=slower, ceiling=max(1.0, rate - 1.0), changed_at=now)


def _full(backlog: float, interval: float) -> bool:
    """`BACKLOG_SECONDS` of a key's sends held here (a sum of intervals: within half of one)."""
    return backlog >= BACKLOG_SECONDS - interval / 2


class CastPacer:
    def __init__(
        self,
        store: Store,
        per_key_rate: float,
        ip_rate: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = PacingRepository(store)
        self._configured = per_key_rate
        self._clock = clock
        self._ip = SlidingWindow(math.floor(ip_rate), WINDOW)
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}  # sends waiting for their key, by key
        self._rates: dict[str, float] = {}  # the rate each key was last paced at
        self._next_due: dict[str, float] = {}  # when the next deferred send should come back
        self._admitted: dict[str, float] = {}  # until when sends just admitted keep a key busy
        self._sends_waiting_for_ip = 0
        self._store_time = 0.0  # how long the last reservation took

    @property
    def configured_rate(self) -> float:
        return self._configured

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def departure(self, ticket: Ticket) -> PacedDeparture:
        return PacedDeparture(self, ticket)

    def defer_until(self, api_key: str, now: float) -> float | None:
        """When a send for this key should come back instead of waiting here, because this
        process already holds `BACKLOG_SECONDS` of its sends; None: wait (`before_send`).
        Deferred sends come back spread at the key's nominal rate, a little faster than it can
        send (its log spaces R sends over WINDOW): come back any slower and a long backlog would
        drain until the key waits for its returns (it did: 96.9 % of R over 10,000 messages).
        The few that come back too early are deferred again. `RETURN_AHEAD_SECONDS` before their
        turn, so the key never runs dry waiting for them."""
        name, interval = self._name_and_interval(api_key)
        backlog = self._waiting.get(name, 0) * interval
        return self._deferred(name, interval, backlog, now) if _full(backlog, interval) else None

    def admit(self, api_key: str, now: float) -> float | None:
        """`defer_until` for a message just accepted, which the worker only reaches
        `before_send` with after a few store reads: the sends admitted meanwhile count too, each
        for one interval from now on, so a burst of webhooks is deferred here once the key's
        backlog is full, not admitted, read and deferred by the worker one by one."""
        name, interval = self._name_and_interval(api_key)
        backlog = max(self._waiting.get(name, 0) * interval, self._admitted.get(name, now) - now)
        if _full(backlog, interval):
            return self._deferred(name, interval, backlog, now)
        self._admitted[name] = now + backlog + interval
        return None

    def _name_and_interval(self, api_key: str) -> tuple[str, float]:
        name = KEY_PREFIX + key_fingerprint(api_key)
        return name, 1.0 / self._rates.get(name, self._configured)

    def _deferred(self, name: str, interval: float, backlog: float, now: float) -> float:
        due = max(self._next_due.get(name, 0.0), now + backlog - RETURN_AHEAD_SECONDS) + interval
        self._next_due[name] = due
        return due

    async def before_send(self, api_key: str) -> Ticket:
        """Wait until the key may send; the rate (msg/s) and slot this send was paced at.

        One reservation per key at a time in this process: the others wait here, not on a
        reserved slot, so a slow-down applies to them at once."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            ticket = await self._paced(name)
        finally:
            self._waiting[name] -= 1
        self._rates[name] = ticket.rate
        return ticket

    async def left(self, ticket: Ticket) -> None:
        """The send's request has left (its body is written): its time in the key's log becomes
        when it left. Later than its time (a stall on the way out): at once, even if that breaks
        the shape, since the send `limit` after it must reach Cast more than 1 s after it.
        Earlier (the usual case): the room it leaves goes to the send `limit` after it, if the
        store can be reached (else the time stays the latest it could have left, which is safe).
        Measured when the request leaves, not when Cast answers: how long Cast takes to answer
        says nothing about when the request arrived (moving by it would slow a key down to one
        send per answer time)."""
        left_at = self._clock()
        try:
            await self._repo.move_in_log(
                ticket.name, ticket.slot, left_at, ticket.shape, force=True
            )
        except StoreUnavailable as exc:
            if left_at > ticket.slot:  # a late send's move is not optional
                raise
            log.warning("could not give a send's unused time back", extra={"reason": str(exc)})

    async def _paced(self, name: str) -> Ticket:
        async with self._key_locks.setdefault(name, asyncio.Lock()):
            while True:
                state = await self._repo.state(name)
                now = self._clock()
                rate = current_rate(state, self._configured, now)
                shape = log_shape(rate)
                # an idle key's send goes when the reservation is done, not late by its time
                earliest = max(now + self._store_time, state.blocked_until)
                slot = await self._repo.reserve_in_log(
                    name, now=earliest + MAX_DEPARTURE, shape=shape
                )
                store_time = self._store_time = self._clock() - now  # a move's, about
                let_go = max(slot - MAX_DEPARTURE - LEAD, earliest)
                await sleep_until(let_go, self._clock)
                self._sends_waiting_for_ip += 1
                try:
                    at = await self._leaves_in_time(name, slot, let_go, shape, store_time)
                finally:
                    self._sends_waiting_for_ip -= 1
                if at is not None:
                    return Ticket(name, rate, at, shape)

    async def _leaves_in_time(
        self, name: str, slot: float, let_go: float, shape: LogShape, store_time: float
    ) -> float | None:
        """This send's time in the key's log (the latest it may leave) when it is let go now
        (the per-IP budget has room): its slot if it woke up at most MAX_SLOT_LATENESS after
        `let_go`, else MAX_DEPARTURE after now, once moved there in the log (and again if the
        move took longer than foreseen); None (a new slot) when the log has no room there any
        more (the send `limit` after it is already reserved: it woke up very late) or the store
        is too slow to catch up.

        The per-IP use is taken last, with no await between it and the return: what the
        budget counts is when the request leaves, not a grant a move's round trip before."""
        await self._ip_room()
        for _ in range(MAX_MOVES + 1):
            if self._clock() - let_go <= MAX_SLOT_LATENESS:
                self._ip.take()
                return slot
            started = self._clock()
            let_go = started + store_time  # the move done, about: its gate, no lead
            to = let_go + MAX_DEPARTURE
            if not await self._repo.move_in_log(name, slot, to, shape):
                return None
            slot, store_time = to, self._clock() - started
            await self._ip_room()
        return None

    async def rate_limited(self, api_key: str, paced_at: float, retry_after: float | None) -> float:
        """Cast answered 429 to a send paced at `paced_at`: slow the key down; its new rate."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        now = self._clock()
        state = await self._repo.update_state(
            name,
            lambda s: after_rate_limited(s, self._configured, now, paced_at, retry_after),
        )
        return current_rate(state, self._configured, now)

    async def rates(self) -> dict[str, float]:
        """Current rate of every key that has been slowed down, by `key_label` (the others
        send at `cast_rate_per_key`). States kept under a key's 12-digit id of before
        (transient) are left out."""
        now = self._clock()
        states = await self._repo.states(KEY_PREFIX)
        return {
            label_of(name.removeprefix(KEY_PREFIX)): current_rate(state, self._configured, now)
            for name, state in states.items()
            if len(name) > len(KEY_PREFIX) + LEGACY_ID_LENGTH
        }

    async def _ip_room(self) -> None:
        """Until the per-IP budget has room for one more request (taken by the caller)."""
        while (delay := self._ip.delay()) > 0:  # noqa: ASYNC110 (refills with time)
            await asyncio.sleep(delay)

    async def before_poll(self) -> None:
        """Status polls use the per-IP budget too, but only what sends leave over."""
        # The budget refills with time, not on an event, so this polls.
        while self._sends_waiting_for_ip or self._ip.delay() > 0:  # noqa: ASYNC110
            await asyncio.sleep(POLL_YIELD_SECONDS)
        self._ip.take()
