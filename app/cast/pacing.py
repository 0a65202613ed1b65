"""Pacing at Cast's limits so bulk sends never provoke 429s, and slowing down when they do.

Per API key, for the whole cluster: Cast allows R sends per second per key (its algorithm is
undocumented: the strictest plausible one is a sliding log, at most R in ANY 1-s interval). Each
send takes one slot in the store, `spacing(R, 1 s)` apart (`app/pacing.py`: 1.04 s / R, 96 % of
R), so send k and send k+R reach Cast more than 1 s apart whatever the network's jitter.

Backlog: a send whose slot is more than `HORIZON` away reserves nothing and comes back later
(`ComeBack`), so a key's backlog waits in the outbox, not in the worker's slots that receipt
polls and status reports need. Returns are themselves spaced one interval apart for the whole
cluster (a second slot line per key), from `HORIZON / 2` before the key's next free slot: they
meet the key as its backlog drains, one by one, not all at once.

Adaptive: a 429 for a key slows that key down for the cluster (state in the store):
multiplicative decrease (x0.8, at least one step), a block for Retry-After, and a slow recovery
(+1/s per `RECOVERY_STEP_SECONDS`) up to `cast_rate_per_key`, but not above the rate that drew
the 429 for `CEILING_HOLD_SECONDS`, so a key whose real limit is lower settles instead of
probing it every minute. A send waiting for its slot when the key slows down takes a new one.

Per process (Cast's per-IP limit, shared by sends and receipt polls): at most `ip_rate`
requests in any `spacing`-stretched second, sends first. Keys are identified by their identity
(app/cast/keys.py), never by the key.
"""

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from app.cast.keys import key_fingerprint, label_of
from app.pacing import (
    Later,
    LimitState,
    PacingRepository,
    Sleep,
    SlidingWindow,
    Turns,
    spacing,
)
from app.store import Store

HORIZON = 2.0  # seconds of a key's sends that may wait for their slots in the workers
DECREASE = 0.8
RECOVERY_STEP_SECONDS = 60.0
CEILING_HOLD_SECONDS = 3600.0
DEFAULT_RETRY_AFTER = 1.0
KEY_PREFIX = "cast-key:"
LEGACY_ID_LENGTH = 12  # states named by 12 hex digits of SHA-256 of the key (before issue 28)
RETURNS_SUFFIX = ":returns"
# A second stretched by the network's jitter and a send's lateness: a key's slots are
# SECOND / rate apart, and the per-IP budget counts `ip_rate` requests in any SECOND.
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


class CastPacer:
    def __init__(
        self,
        store: Store,
        per_key_rate: float,
        ip_rate: float,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._repo = PacingRepository(store)
        self._configured = per_key_rate
        self._clock = clock
        self._turns = Turns(self._repo, clock, sleep)
        self._sleep = sleep
        self._ip = SlidingWindow(math.floor(ip_rate), SECOND, clock)
        self._sends_waiting_for_ip = 0

    @property
    def configured_rate(self) -> float:
        return self._configured

    def _interval(self, state: LimitState, now: float) -> float:
        return SECOND / current_rate(state, self._configured, now)

    async def before_send(self, api_key: str) -> SendNow | ComeBack:
        """Wait for the key's next slot and room in the per-IP budget, or say when to come
        back if the key's slot is more than `HORIZON` away."""
        name = KEY_PREFIX + key_fingerprint(api_key)
        while True:
            turn = await self._turns.take(name, self._interval, HORIZON)
            if isinstance(turn, Later):
                return ComeBack(await self._return_time(name, turn))
            if self._ip.delay() == 0:
                self._ip.take()
                return SendNow(rate=SECOND / turn.interval)
            await self._wait_for_ip_room()  # then a new slot: this one has passed

    async def _return_time(self, name: str, later: Later) -> float:
        return await self._repo.reserve_slot(
            name + RETURNS_SUFFIX, now=later.slot - HORIZON / 2, interval=later.interval
        )

    async def _wait_for_ip_room(self) -> None:
        self._sends_waiting_for_ip += 1
        try:
            await self._sleep(self._ip.delay())
        finally:
            self._sends_waiting_for_ip -= 1

    async def before_poll(self) -> None:
        """Receipt polls and account reads use the per-IP budget too, but only what sends leave
        over: while a send waits for room, a poll waits one more request's time."""
        while self._sends_waiting_for_ip or self._ip.delay() > 0:
            await self._sleep(self._ip.delay() or SECOND / self._ip.limit)
        self._ip.take()

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
