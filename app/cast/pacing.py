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
from collections.abc import Callable
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
# A second stretched by the network's jitter and a send's lateness: a key's slots are
# SECOND / rate apart, and so are the IP budget's.
SECOND = spacing(1, 1.0)


@dataclass(frozen=True, slots=True)
class SendNow:
    """The send may leave now, paced at `rate` msg/s."""

    rate: float


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
        self._sleep = sleep
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

    async def wait_for_slot(self, since: float, until: float) -> Later | None:
        """Sleep until the first free slot from `since` if it is at most `until`: None then;
        else nothing is reserved and the free slot is told. A slot woken up to late is dropped
        for the next (asked for that much further ahead, as `Turns.take` does)."""
        lead = 0.0
        while True:
            at = max(since, self._clock() + lead)
            slot = await self.reserve(at, until - at)
            if slot > until:
                return Later(slot, 0.0)
            if (wait := slot - self._clock()) > 0:
                await self._sleep(wait)
            now = self._clock()
            if now - slot <= MAX_LATENESS / 2 and self.still_open(now):
                return None
            lead = max(0.0, now - slot)

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

    @property
    def configured_rate(self) -> float:
        return self._configured

    def _paced(self, share: float) -> SpacingRule:
        def interval(state: LimitState, now: float) -> float:
            return SECOND / min(current_rate(state, self._configured, now), share)

        return interval

    async def before_send(self, api_key: str, *, returning: bool = False) -> SendNow | ComeBack:
        """Wait for a slot of the key and one of the IP budget at (about) the same time, or say
        when to come back if the key's slot is more than `HORIZON` away (`returning`: the send
        came back once already; see `_return_time`).

        The key is paced at the lower of its own rate and its share of the IP budget. Its slot
        is reserved first, then the IP's from it, at most `lateness_allowed` later; when the
        IP's first free slot is later, the key's slot moves to it (`_ip_slot_from`) or, no
        longer the key's last, is dropped, and the next is asked for from when the IP has room."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        earliest = 0.0
        while True:
            rule = self._paced(await self.ip.share(name))
            state = await self._repo.state(name)
            now = self._clock()
            interval = rule(state, now)
            start = max(now, earliest, state.blocked_until)
            key_slot = start
            if start - now <= HORIZON:
                key_slot = await self._repo.reserve_slot(
                    name, now=start, interval=interval, horizon=HORIZON - (start - now)
                )
            if key_slot - now > HORIZON:
                later = Later(key_slot, interval)
                return ComeBack(await self._return_time(name, later, returning))
            slack = lateness_allowed(current_rate(state, self._configured, now), interval)
            busy, key_slot = await self._ip_slot_from(name, key_slot, slack)
            now = self._clock()
            if busy is not None:  # the IP has no room in time: this key slot is dropped
                # the next asked for that much further ahead if this one was late already
                earliest = max(busy.slot, now + max(0.0, now - key_slot))
            elif still_open(self._repo.known_state(name), rule, interval, now):
                return SendNow(rate=SECOND / interval)
            else:  # the key slowed down or was blocked meanwhile
                earliest = now

    async def _ip_slot_from(
        self, name: str, key_slot: float, slack: float
    ) -> tuple[Later | None, float]:
        """Wait for an IP slot at most `slack` after the key's slot. When the IP's first free
        slot is later (a read or another key holds the one wanted) but within `HORIZON`, the
        key's slot moves to it if it is still the key's last (the key's next slots are then
        spaced from there), and the wait starts again: an idle key waits for the IP's next
        slot, not for its own next interval. The outcome, and the key's slot."""
        while True:
            # MAX_LATENESS / 2: how late any slot may be woken up to (the key's included)
            busy = await self.ip.wait_for_slot(key_slot, key_slot + slack + MAX_LATENESS / 2)
            if busy is None or busy.slot - self._clock() > HORIZON:
                return busy, key_slot
            if not await self._repo.move_slot(name, reserved=key_slot, to=busy.slot):
                return busy, key_slot
            key_slot = busy.slot

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
