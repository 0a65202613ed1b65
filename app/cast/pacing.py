"""Pacing at Cast's limits so bulk sends never provoke 429s, and slowing down when they do.

Per API key, for the whole cluster: Cast allows R sends per second per key (its algorithm is
undocumented: the strictest plausible one is a sliding log, at most R in ANY 1-s interval). Each
send takes one slot in the store, `spacing(R, 1 s)` apart (`app/pacing.py`: 1.04 s / R, 96 % of
R), so send k and send k+R reach Cast more than 1 s apart whatever the network's jitter.

Per IP (`IpBudget`): every Cast request (sends, receipt reads, account reads, sender checks, the
opt-out sync) takes a slot of one more line, `SECOND / CAST_IP_RATE` apart: the egress group's
line in the store (`cast-ip:<group>`, shared by the replicas behind one address) or, without a
group, this process's. The budget is planned, not first come: a key sends at most its share of
it, the budget less `READ_FLOOR` divided among the keys with work, so reads always find room; a
read waits for its slot like a send, behind at most the sends already holding slots. The keys
with work are the ones that asked for a send in the last `ACTIVE_SECONDS`: here, and in an
egress group also those whose slot line in the store moved since (read at most once per
`CLUSTER_VIEW_SECONDS`), so every replica divides the budget by the same count.

Nothing but the send follows its slot: `before_send` runs the caller's last check (the worker's
opt-out read) inside the wait, timed to end by the IP slot, and asks for the slots a lead ahead:
as long as reserving them and the check took lately (`Longest`), so that a slow store makes the
lead longer, never the send late (an attempt late anyway asks again that much further ahead, up
to `MAX_LEAD`). The reservations compare reserved times only, never the clock.

Backlog: a send whose key slot is more than `HORIZON` away reserves nothing and comes back later
(`ComeBack`), so a key's backlog waits in the outbox, not in the worker's slots that receipt
polls and status reports need. Returns are themselves spaced at the key's interval (its share of
the IP budget when that is smaller than its own limit) for the whole cluster (a second slot line
per key), from `HORIZON / 2` before the key's next free slot: they meet the key as its backlog
drains, one by one, not all at once.

Adaptive: a 429 for a send slows down what could have caused it. A key paced at its own limit:
that key, for the cluster (state in the store): multiplicative decrease (x0.8, at least one
step), a block for Retry-After, and a slow recovery (+1/s per `RECOVERY_STEP_SECONDS`) up to
`cast_rate_per_key`, but not above the rate that drew the 429 for `CEILING_HOLD_SECONDS`, so a key
whose real limit is lower settles instead of probing it every minute. A key paced below
`IP_BLAME` of its limit (sharing the IP budget) cannot have drawn it: the IP budget slows down
the same way instead, as it does for a 429 to a read, but by one request/s only: the per-IP limit
is documented (30 requests/s, cast-api.md §9), so its 429 means a request that left late, not a
lower limit. Keys are identified by their identity (app/cast/keys.py), never by the key.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from app.cast.keys import key_fingerprint, label_of
from app.pacing import (
    MAX_LATENESS,
    Later,
    LimitState,
    LocalPacingRepository,
    PacingRepository,
    Sleep,
    SpacingRule,
    Turns,
    sleep_until,
    spacing,
    still_open,
)
from app.store import Store

HORIZON = 2.0  # seconds of a key's sends that may wait for their slots in the workers
DECREASE = 0.8
RECOVERY_STEP_SECONDS = 60.0
CEILING_HOLD_SECONDS = 3600.0
DEFAULT_RETRY_AFTER = 1.0
READ_FLOOR = 2.0  # requests/s of the IP budget no key's share takes: receipts and account reads
IP_BLAME = 0.5  # a 429 to a key paced below this part of its limit is the IP's
ACTIVE_SECONDS = 5.0  # a key that asked for a send this recently shares the IP budget
CLUSTER_VIEW_SECONDS = 1.0  # an egress group's active keys are read from the store this often
KEY_PREFIX = "cast-key:"
IP_PREFIX = "cast-ip:"
LEGACY_ID_LENGTH = 12  # states named by 12 hex digits of SHA-256 of the key (before issue 28)
RETURNS_SUFFIX = ":returns"
MAX_LEAD = HORIZON / 2  # how far ahead of a send its slots may be asked for (see before_send)
RECENT = 32  # how many reservations and checks the lead remembers
# A second stretched by the network's jitter and a send's lateness: a key's slots are
# SECOND / rate apart, and so are the IP budget's.
SECOND = spacing(1, 1.0)


@dataclass(frozen=True, slots=True)
class SendNow[T]:
    """The send may leave now, paced at `rate` msg/s; `checked`: what the last check found."""

    rate: float
    checked: T


@dataclass(frozen=True, slots=True)
class Slots:
    """A send's reserved slots: the key's, and the IP budget's (the later, when it leaves)."""

    key: float
    ip: float


@dataclass(frozen=True, slots=True)
class ComeBack:
    """The key's backlog is full: try the send again at `at`."""

    at: float


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


def after_ip_rate_limited(
    state: LimitState, configured: float, now: float, retry_after: float | None
) -> LimitState:
    """The IP budget's state after a 429 it drew: blocked for Retry-After and one request/s
    slower (the 429s of one burst, answered while the first one's block lasts, once)."""
    blocked = state.blocked(now + (retry_after or DEFAULT_RETRY_AFTER))
    if state.blocked_until > now:
        return blocked
    slower = max(1.0, current_rate(state, configured, now) - 1.0)
    return replace(blocked, rate=slower, ceiling=slower, changed_at=now)


def lateness_allowed(limit: float, interval: float) -> float:
    """How late after its key slot a send may leave for the IP budget: R + 1 sends of a key paced
    `interval` apart span R intervals, and must still span `SECOND` if the first leaves late
    (none at the key's full rate; at most `HORIZON`, so a read never waits longer)."""
    return min(HORIZON, max(0.0, max(1, math.floor(limit)) * interval - SECOND))


class Longest:
    """The longest of the last `RECENT` durations observed (0 before any)."""

    def __init__(self) -> None:
        self._seen: deque[float] = deque(maxlen=RECENT)

    def observe(self, seconds: float) -> None:
        self._seen.append(seconds)

    @property
    def longest(self) -> float:
        return max(self._seen, default=0.0)


class IpBudget:
    """Cast's per-IP limit: one slot line for every Cast request from one egress address,
    in the store for an egress group, else in this process."""

    def __init__(
        self,
        store: Store,
        rate: float,
        group: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._configured = rate
        self._name = IP_PREFIX + (group or "process")
        self._in_group = bool(group)  # the group's key slot lines show its active keys
        self._repo = PacingRepository(store) if group else LocalPacingRepository()
        self._turns = Turns(self._repo, clock, sleep)
        self._clock = clock
        self._active: dict[str, float] = {}  # key name -> when it last asked for a send
        self._cluster_active: set[str] = set()  # the egress group's, as last read
        self._cluster_read_at = -math.inf

    def _interval(self, state: LimitState, now: float) -> float:
        return SECOND / current_rate(state, self._configured, now)

    async def read(self) -> None:
        """Wait for a read's slot (receipts, account, senders, opt-outs): behind at most the
        sends already holding slots, never behind a whole backlog."""
        await self._turns.take(self._name, self._interval)

    async def reserve(self, at: float, horizon: float) -> float:
        """The first slot from `at`, reserved if it is at most `horizon` after `at`."""
        state = await self._repo.state(self._name)
        start = max(at, state.blocked_until)
        if start - at > horizon:
            return start
        interval = self._interval(state, self._clock())
        return await self._repo.reserve_slot(
            self._name, now=start, interval=interval, horizon=horizon - (start - at)
        )

    def still_open(self, now: float) -> bool:
        """No block and no slower rate since a slot was reserved."""
        state = self._repo.known_state(self._name)
        return state.blocked_until <= now and state.changed_at <= now - MAX_LATENESS

    async def share(self, key_name: str) -> float:
        """The rate a key can get now: the budget less the readers' floor, divided among the
        keys with work (this one included; see the module)."""
        now = self._clock()
        self._active[key_name] = now
        self._active = {k: at for k, at in self._active.items() if now - at < ACTIVE_SECONDS}
        active = self._active.keys() | await self._group_active(now)
        rate = current_rate(self._repo.known_state(self._name), self._configured, now)
        return max(1.0, rate - READ_FLOOR) / len(active)

    async def _group_active(self, now: float) -> set[str]:
        """The egress group's keys whose slot line moved in the last `ACTIVE_SECONDS`."""
        if not self._in_group or now - self._cluster_read_at < CLUSTER_VIEW_SECONDS:
            return self._cluster_active
        self._cluster_read_at = now  # the sends meanwhile use the last count
        slots = await self._repo.recent_slots(KEY_PREFIX, since=now - ACTIVE_SECONDS)
        self._cluster_active = {name for name in slots if not name.endswith(RETURNS_SUFFIX)}
        return self._cluster_active

    async def rate_limited(self, retry_after: float | None) -> None:
        now = self._clock()
        await self._repo.update_state(
            self._name,
            lambda s: after_ip_rate_limited(s, self._configured, now, retry_after),
        )


class CastPacer:
    def __init__(
        self,
        store: Store,
        per_key_rate: float,
        ip_rate: float,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        egress_group: str = "",
    ) -> None:
        self._repo = PacingRepository(store)
        self._configured = per_key_rate
        self._clock = clock
        self._sleep = sleep
        self.ip = IpBudget(store, ip_rate, egress_group, clock, sleep)
        self._reserving = Longest()  # from asking for a send's slots to holding them
        self._checking = Longest()  # the last check before a send

    @property
    def configured_rate(self) -> float:
        return self._configured

    def _paced(self, share: float) -> SpacingRule:
        def interval(state: LimitState, now: float) -> float:
            return SECOND / min(current_rate(state, self._configured, now), share)

        return interval

    async def before_send[T](
        self, api_key: str, check: Callable[[], Awaitable[T]], *, returning: bool = False
    ) -> SendNow[T] | ComeBack:
        """Wait for a slot of the key and one of the IP budget at (about) the same time, run
        `check` (the last look before the send: the worker's opt-out read) just before them, and
        let the send go; or say when to come back if the key's slot is more than `HORIZON` away
        (`returning`: the send came back once already; see `_return_time`).

        The key is paced at the lower of its own rate and its share of the IP budget. The slots
        are asked for `lead` ahead: as long as reserving them and the check took lately, so that
        nothing but the send follows the slot. An attempt that finds its slot passed anyway
        (a slow store, a busy event loop) drops the IP slot and asks again that much further
        ahead; its key slot moves along if it is still the key's last. A store so slow that the
        lead reaches `MAX_LEAD` sends late rather than never."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        earliest, behind = 0.0, 0.0  # behind: how late this send's attempts found their slots
        held: float | None = None  # the key slot of a late attempt
        while True:
            rule = self._paced(await self.ip.share(name))
            state = await self._repo.state(name)
            now = self._clock()
            interval = rule(state, now)
            lead = min(MAX_LEAD, self._reserving.longest + self._checking.longest + behind)
            start = max(now + lead, earliest, state.blocked_until)
            key_slot = await self._key_slot(name, start, interval, now, held)
            if key_slot - now > HORIZON:
                later = Later(key_slot, interval)
                return ComeBack(await self._return_time(name, later, returning))
            slack = lateness_allowed(current_rate(state, self._configured, now), interval)
            slots = await self._ip_slot_from(name, key_slot, slack, until=now + HORIZON)
            self._reserving.observe(self._clock() - now)
            if isinstance(slots, Later):  # the IP has no room in time: the key slot is dropped
                earliest, held = slots.slot, None
                continue
            checked = await self._checked_before(slots.ip, check)
            now = self._clock()
            if now - slots.ip > MAX_LATENESS / 2 and lead < MAX_LEAD:
                behind += now - slots.ip
                held = slots.key
            elif still_open(self._repo.known_state(name), rule, interval, now) and (
                self.ip.still_open(now)
            ):
                return SendNow(rate=SECOND / interval, checked=checked)
            else:  # the key or the IP budget slowed down or was blocked meanwhile
                earliest, held = now, None

    async def _key_slot(
        self, name: str, start: float, interval: float, now: float, held: float | None
    ) -> float:
        """The key's first slot from `start`: the `held` one moved there while it is still the
        key's last, else a new one (reserved if at most `HORIZON` from `now`)."""
        if start - now > HORIZON:
            return start
        if held is not None and await self._repo.move_slot(name, reserved=held, to=start):
            return start
        return await self._repo.reserve_slot(
            name, now=start, interval=interval, horizon=HORIZON - (start - now)
        )

    async def _ip_slot_from(
        self, name: str, key_slot: float, slack: float, until: float
    ) -> Slots | Later:
        """Reserve an IP slot at most `slack` after the key's slot (and `MAX_LATENESS / 2`, how
        late any slot may be woken up to). When the IP's first free slot is later (a read or
        another key holds the one wanted) but before `until`, the key's slot moves to it if it
        is still the key's last (the key's next slots are then spaced from there), and the IP
        slot is asked for from there: an idle key waits for the IP's next slot, not for its own
        next interval. Otherwise the IP's first free slot, reserved by nobody.

        Only reserved times are compared here, never the clock: how long the round trips take
        is the lead's business (a loop that chased the clock never ended on a slow store)."""
        window = slack + MAX_LATENESS / 2
        while True:
            ip_slot = await self.ip.reserve(key_slot, window)
            if ip_slot - key_slot <= window:
                return Slots(key=key_slot, ip=ip_slot)
            if ip_slot > until or not await self._repo.move_slot(
                name, reserved=key_slot, to=ip_slot
            ):
                return Later(ip_slot, 0.0)
            key_slot = ip_slot

    async def _checked_before[T](self, slot: float, check: Callable[[], Awaitable[T]]) -> T:
        """Run `check` to end by `slot` (started as long before it as checks took lately), then
        wait for the slot."""
        await sleep_until(slot - self._checking.longest, self._clock, self._sleep)
        started = self._clock()
        checked = await check()
        self._checking.observe(self._clock() - started)
        await sleep_until(slot, self._clock, self._sleep)
        return checked

    async def _return_time(self, name: str, later: Later, returning: bool) -> float:
        """A first return takes the next slot of the key's returns line (the backlog comes back
        one by one, in the order it was sent back). A send back a second time (the key's line
        fell behind its returns: slots it moved or dropped) comes back `HORIZON / 2` before
        the key's next free slot, unreserved: at the back of the returns line it would wait
        for the whole backlog, out of order (a 5,000-message run sent the first ones a minute
        late)."""
        if returning:
            return later.slot - HORIZON / 2
        return await self._repo.reserve_slot(
            name + RETURNS_SUFFIX, now=later.slot - HORIZON / 2, interval=later.interval
        )

    async def sent_since(self, api_key: str, at: float) -> bool:
        """Whether the key took a send slot after `at`, in any process sharing the store."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        return name in await self._repo.recent_slots(name, since=at)

    async def before_poll(self) -> None:
        """Receipt reads, account reads, sender checks and the opt-out sync: one IP slot each."""
        await self.ip.read()

    async def read_rate_limited(self, retry_after: float | None) -> None:
        """Cast answered 429 to a read: only the IP budget can have drawn it."""
        await self.ip.rate_limited(retry_after)

    async def rate_limited(self, api_key: str, paced_at: float, retry_after: float | None) -> float:
        """Cast answered 429 to a send paced at `paced_at`: slow down the key if it could have
        drawn it, else the IP budget; the key's new rate."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        now = self._clock()
        state = await self._repo.state(name)
        if paced_at < IP_BLAME * current_rate(state, self._configured, now):
            await self.ip.rate_limited(retry_after)
            return current_rate(state, self._configured, now)
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
