"""Cast pacing: one slot per send in the store, shared by every pacer on it (several bridge
processes), the per-IP budget (per process, or per egress group through the store) and keys'
shares of it, and slowing down what drew a 429: the key or the IP budget.

On a fake clock: a pacer's sleep moves the clock by exactly what it asked for (one send at a
time, so sleeps never overlap), unless a test makes it oversleep."""

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import cast

import pytest

from app.cast.keys import key_fingerprint, key_label
from app.cast.pacing import (
    ACTIVE_SECONDS,
    CEILING_HOLD_SECONDS,
    CLUSTER_VIEW_SECONDS,
    DEFAULT_RETRY_AFTER,
    HORIZON,
    IP_PREFIX,
    KEY_PREFIX,
    MAX_LEAD,
    READ_FLOOR,
    RECOVERY_STEP_SECONDS,
    SECOND,
    CastPacer,
    ComeBack,
    SendNow,
    after_ip_rate_limited,
    after_rate_limited,
    current_rate,
    lateness_allowed,
)
from app.devkit.fake_cast import max_in_any_window
from app.pacing import JITTER, MAX_LATENESS, LimitState
from app.store import Store
from tests.support.doubles import nothing_to_check
from tests.support.units import FakeClock, at_time

NOW = 1_700_000_000.0
R = 10.0
INTERVAL = SECOND / R  # 0.104 s: 96 % of R


def sleeping_on(clock: FakeClock, *oversleeps: float) -> Callable[[float], Awaitable[None]]:
    """A sleep that moves `clock` on; the first sleeps last longer by `oversleeps` (a busy
    event loop woke the pacer up late)."""
    late = list(oversleeps)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds + (late.pop(0) if late else 0.0))
        await asyncio.sleep(0)

    return sleep


async def no_sleep(seconds: float) -> None:
    """A pacer that never waits: each send reserves the next slot at once (to fill a key's
    backlog without letting time pass)."""


async def send(
    pacer: CastPacer, key: str = "cast_a", *, returning: bool = False
) -> SendNow[None] | ComeBack:
    return await pacer.before_send(key, nothing_to_check, returning=returning)


def pacer_on(store: Store, clock: FakeClock, rate: float = R, ip_rate: float = 1000) -> CastPacer:
    return CastPacer(store, rate, ip_rate, clock=clock, sleep=sleeping_on(clock))


async def send_times(pacers: list[CastPacer], clock: FakeClock, count: int) -> list[float]:
    times = []
    for i in range(count):
        assert isinstance(await send(pacers[i % len(pacers)]), SendNow)
        times.append(clock())
    return times


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


# Per key, cluster-wide --------------------------------------------------------------------
async def test_sends_of_one_key_through_two_pacers_on_one_store_are_one_spacing_apart(
    store: Store, clock: FakeClock
):
    pacers = [pacer_on(store, clock) for _ in range(2)]
    times = await send_times(pacers, clock, 25)
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([INTERVAL] * 24)


async def test_send_k_and_send_k_plus_r_leave_more_than_a_second_and_the_jitter_apart(
    store: Store, clock: FakeClock
):
    times = await send_times([pacer_on(store, clock)], clock, 31)
    spans = [b - a for a, b in zip(times, times[10:], strict=False)]
    assert min(spans) == pytest.approx(1.0 + JITTER + MAX_LATENESS)
    assert max_in_any_window(times, 1.0 + JITTER) <= R


async def test_an_idle_keys_send_leaves_at_once(store: Store, clock: FakeClock):
    assert await send(pacer_on(store, clock)) == SendNow(rate=R, checked=None)
    assert clock() == NOW


async def test_different_keys_wait_for_each_other_only_as_the_ip_budget_spaces_them(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock)
    for i in range(5):
        await send(pacer, f"cast_{i}")
    assert clock() == at_time(NOW + 4 * SECOND / 1000)


async def test_a_send_that_wakes_up_late_moves_its_slot_to_when_it_leaves(
    store: Store, clock: FakeClock
):
    """Woken up later than MAX_LATENESS / 2, it could reach Cast within a second of the send R
    after it (whose slot is R spacings after the late one's): its slot, still the key's last,
    moves to when it leaves (asked for that much further ahead), and the next are spaced from
    there."""
    pacer = CastPacer(store, R, 1000, clock=clock, sleep=sleeping_on(clock, MAX_LATENESS))
    await send(pacer)  # idle: at once
    await send(pacer)  # its slot at NOW + INTERVAL; woke up 20 ms after it
    left = NOW + INTERVAL + 2 * MAX_LATENESS
    assert clock() == at_time(left)
    await send(pacer)
    assert clock() == at_time(left + INTERVAL)


async def test_a_send_that_wakes_up_a_little_late_keeps_its_slot(store: Store, clock: FakeClock):
    late = MAX_LATENESS / 2  # the other half is for its way from the pacer to the socket
    pacer = CastPacer(store, R, 1000, clock=clock, sleep=sleeping_on(clock, late))
    await send(pacer)
    await send(pacer)
    assert clock() == at_time(NOW + INTERVAL + late)


# Backlog: sends that would only wait give their worker slot back ------------------------------
async def fill_backlog(
    store: Store, clock: FakeClock, key: str = "cast_a"
) -> tuple[CastPacer, ComeBack]:
    """Sends of `key` reserved up to the horizon, none gone yet; the first told to come back."""
    pacer = CastPacer(store, R, 1000, clock=clock, sleep=no_sleep)
    while isinstance(answer := await send(pacer, key), SendNow):
        pass
    return pacer, answer


async def test_a_send_whose_slot_is_beyond_the_horizon_comes_back_later(
    store: Store, clock: FakeClock
):
    _, answer = await fill_backlog(store, clock)
    first_free = NOW + int(HORIZON / INTERVAL + 1) * INTERVAL
    assert answer == ComeBack(at=at_time(first_free - HORIZON / 2))


async def test_a_send_told_to_come_back_reserves_nothing(store: Store, clock: FakeClock):
    await fill_backlog(store, clock)
    first_free = NOW + int(HORIZON / INTERVAL + 1) * INTERVAL
    name = KEY_PREFIX + key_fingerprint("cast_a")
    assert await store.reserve_slot(name, now=NOW, interval=INTERVAL) == at_time(first_free)


async def test_sends_told_to_come_back_return_one_spacing_apart_for_every_pacer(
    store: Store, clock: FakeClock
):
    await fill_backlog(store, clock)
    pacers = [CastPacer(store, R, 1000, clock=clock, sleep=no_sleep) for _ in range(2)]
    returns = [await send(pacers[i % 2]) for i in range(4)]
    times = [answer.at for answer in returns if isinstance(answer, ComeBack)]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([INTERVAL] * 3)


async def test_a_send_back_a_second_time_returns_before_the_keys_next_slot_not_after_the_backlog(
    store: Store, clock: FakeClock
):
    pacer, _ = await fill_backlog(store, clock)
    for _ in range(50):  # a long backlog waits in the returns line
        await send(pacer)
    first_free = NOW + int(HORIZON / INTERVAL + 1) * INTERVAL

    again = await send(pacer, returning=True)

    assert again == ComeBack(at=at_time(first_free - HORIZON / 2))


async def test_another_keys_backlog_does_not_send_a_key_back(store: Store, clock: FakeClock):
    pacer, _ = await fill_backlog(store, clock, key="cast_a")
    assert isinstance(await send(pacer, "cast_b"), SendNow)


# Slowing down on 429 ------------------------------------------------------------------------
def test_a_429_cuts_the_rate_by_a_fifth_and_blocks_for_retry_after():
    state = after_rate_limited(LimitState(), 10.0, NOW, paced_at=10.0, retry_after=3.0)
    assert current_rate(state, 10.0, NOW) == 8.0
    assert state.blocked_until == NOW + 3.0


def test_a_small_rate_still_drops_by_one_and_never_below_one():
    assert after_rate_limited(LimitState(), 3.0, NOW, 3.0, None).rate == 2.0
    one = LimitState(rate=1.0, ceiling=1.0, changed_at=NOW)
    assert after_rate_limited(one, 3.0, NOW, 1.0, None).rate == 1.0


def test_a_429_for_a_send_paced_before_the_last_slow_down_does_not_slow_down_again():
    slowed = after_rate_limited(LimitState(), 10.0, NOW, paced_at=10.0, retry_after=None)
    again = after_rate_limited(slowed, 10.0, NOW + 0.1, paced_at=10.0, retry_after=None)
    assert current_rate(again, 10.0, NOW + 0.1) == 8.0


def test_the_rate_recovers_one_step_a_minute_up_to_below_the_rate_that_drew_the_429():
    slowed = after_rate_limited(LimitState(), 10.0, NOW, paced_at=10.0, retry_after=None)
    assert current_rate(slowed, 10.0, NOW + RECOVERY_STEP_SECONDS) == 9.0
    assert current_rate(slowed, 10.0, NOW + 10 * RECOVERY_STEP_SECONDS) == 9.0


def test_the_configured_rate_is_tried_again_after_the_ceiling_hold():
    slowed = after_rate_limited(LimitState(), 10.0, NOW, paced_at=10.0, retry_after=None)
    assert current_rate(slowed, 10.0, NOW + CEILING_HOLD_SECONDS) == 10.0


def test_a_key_whose_real_limit_is_8_settles_at_8_after_two_429s():
    """Configured 10/s, Cast allows 8/s: a 429 at 10, recovery to 9, a 429 at 9, then 8 holds."""
    state = after_rate_limited(LimitState(), 10.0, NOW, paced_at=10.0, retry_after=None)
    at_nine = NOW + RECOVERY_STEP_SECONDS
    state = after_rate_limited(state, 10.0, at_nine, paced_at=9.0, retry_after=None)
    later = [at_nine + n * RECOVERY_STEP_SECONDS for n in range(1, 59)]
    assert {current_rate(state, 10.0, t) for t in later} == {8.0}


async def test_a_429_slows_the_key_down_for_every_pacer_on_the_store(
    store: Store, clock: FakeClock
):
    first, second = pacer_on(store, clock), pacer_on(store, clock)
    assert await first.rate_limited("cast_a", paced_at=10.0, retry_after=0.0) == 8.0
    assert await send(second) == SendNow(rate=8.0, checked=None)
    assert await second.rates() == {key_label("cast_a"): 8.0}


async def test_retry_after_holds_the_key_back_for_every_pacer(store: Store, clock: FakeClock):
    await pacer_on(store, clock).rate_limited("cast_a", 10.0, retry_after=0.4)
    await send(pacer_on(store, clock))
    assert clock() == at_time(NOW + 0.4)


async def test_a_block_beyond_the_horizon_sends_the_send_back_until_it_ends(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock)
    await pacer.rate_limited("cast_a", 10.0, retry_after=30.0)
    assert await send(pacer) == ComeBack(at=NOW + 30.0 - HORIZON / 2)
    assert clock() == NOW


async def test_a_send_waiting_for_its_slot_when_the_key_slows_down_takes_a_slot_at_the_new_rate(
    store: Store, clock: FakeClock
):
    slowed = []

    async def sleep(seconds: float) -> None:  # while it waits, another send draws a 429
        if not slowed:
            slowed.append(await pacer.rate_limited("cast_a", paced_at=R, retry_after=0.0))
        clock.advance(seconds)

    pacer = CastPacer(store, R, 1000, clock=clock, sleep=sleep)
    await send(pacer)
    assert await send(pacer) == SendNow(rate=8.0, checked=None)
    assert clock() == at_time(NOW + INTERVAL + SECOND / 8.0)


async def test_two_pacers_answering_the_same_burst_of_429s_slow_down_once(store: Store):
    pacers = [CastPacer(store, per_key_rate=10, ip_rate=1000) for _ in range(2)]
    await asyncio.gather(*(p.rate_limited("cast_a", 10.0, 0.0) for p in pacers * 2))
    assert await pacers[0].rates() == {key_label("cast_a"): 8.0}


# Per IP ------------------------------------------------------------------------
async def test_sends_and_polls_together_never_exceed_the_ip_rate_in_any_second(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, rate=1000, ip_rate=15)
    times = []
    for i in range(20):
        await send(pacer, f"cast_{i}")
        times.append(clock())
        await pacer.before_poll()
        times.append(clock())
    assert max_in_any_window(times, 1.0 + JITTER) <= 15
    assert times[-1] - times[0] == pytest.approx(39 * SECOND / 15)  # and no slower


async def test_pacers_without_an_egress_group_have_their_own_ip_budget(
    store: Store, clock: FakeClock
):
    pacers = [pacer_on(store, clock, ip_rate=10) for _ in range(2)]
    await send(pacers[0])
    await send(pacers[1], "cast_b")
    assert clock() == NOW


async def test_pacers_of_one_egress_group_share_one_ip_budget_through_the_store(
    store: Store, clock: FakeClock
):
    pacers = [
        CastPacer(store, R, 10, clock=clock, sleep=sleeping_on(clock), egress_group="nat-1")
        for _ in range(2)
    ]
    times = []
    for i in range(20):
        await send(pacers[i % 2], f"cast_{i}")
        times.append(clock())
    assert max_in_any_window(times, 1.0 + JITTER) <= 10
    assert min(b - a for a, b in itertools.pairwise(times)) == pytest.approx(SECOND / 10)


async def test_a_key_among_many_is_paced_at_its_share_of_the_ip_budget(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    for i in range(19):
        await send(pacer, f"cast_{i}")
    first = await send(pacer)
    assert first == SendNow(rate=(30 - READ_FLOOR) / 20, checked=None)


async def test_a_keys_backlog_comes_back_at_the_rate_of_its_share_of_the_ip_budget(
    store: Store, clock: FakeClock
):
    pacer = CastPacer(store, R, 30, clock=clock, sleep=no_sleep)
    for i in range(19):
        await send(pacer, f"cast_{i}")
    turns = [await send(pacer) for _ in range(6)]
    backs = [turn.at for turn in turns if isinstance(turn, ComeBack)]
    share_interval = SECOND / ((30 - READ_FLOOR) / 20)
    assert [b - a for a, b in itertools.pairwise(backs)] == pytest.approx(
        [share_interval] * (len(backs) - 1)
    )
    assert len(backs) >= 2


async def test_a_read_waits_behind_the_sends_holding_slots_not_behind_a_backlog(
    store: Store, clock: FakeClock
):
    pacer = CastPacer(store, R, 30, clock=clock, sleep=no_sleep)
    for _ in range(200):  # one key's backlog: most of them come back later
        await send(pacer)
    reading = CastPacer(store, R, 30, clock=clock, sleep=sleeping_on(clock))
    reading.ip = pacer.ip
    await reading.before_poll()
    assert clock() - NOW <= HORIZON + SECOND / R


async def test_a_send_the_ip_budget_cannot_take_in_time_goes_at_the_ips_next_slot(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=2)
    await pacer.before_poll()  # the IP's next slot is SECOND / 2 away, the key's is now
    assert isinstance(await send(pacer), SendNow)
    assert clock() == at_time(NOW + SECOND / 2)


async def test_an_idle_key_whose_ip_slot_a_read_holds_waits_for_the_ips_next_slot_not_its_own(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    await pacer.before_poll()  # a receipt read holds the IP's slot now
    assert isinstance(await send(pacer), SendNow)
    assert clock() == at_time(NOW + SECOND / 30)  # not a key interval (SECOND / R) later


async def test_a_key_slot_moved_to_the_ips_next_slot_spaces_the_keys_next_send_from_there(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    await pacer.before_poll()
    await send(pacer)
    moved = clock()
    await send(pacer)
    assert clock() == at_time(moved + INTERVAL)


# 429s are attributed ----------------------------------------------------------------------------
async def test_a_429_to_a_key_paced_well_below_its_limit_slows_the_ip_budget_not_the_key(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    rate = await pacer.rate_limited("cast_a", paced_at=1.4, retry_after=None)
    assert rate == R
    assert await pacer.rates() == {}
    assert await pacer.ip.share("cast_a") < (30 - READ_FLOOR) / 1  # the budget itself slowed down


async def test_a_429_to_a_key_paced_at_its_limit_slows_the_key_not_the_ip_budget(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    assert await pacer.rate_limited("cast_a", paced_at=R, retry_after=None) == 8.0
    assert await pacer.ip.share("cast_b") == 30 - READ_FLOOR


async def test_a_429_to_a_read_slows_the_ip_budget_and_blocks_it_for_retry_after(
    store: Store, clock: FakeClock
):
    pacer = pacer_on(store, clock, ip_rate=30)
    await pacer.read_rate_limited(retry_after=3.0)
    assert await pacer.ip.share("cast_a") == 29.0 - READ_FLOOR
    back = await send(pacer)  # the block is further away than the horizon
    assert isinstance(back, ComeBack) and back.at >= NOW + 3.0 - HORIZON
    clock.advance(back.at - clock())
    assert isinstance(await send(pacer), SendNow)
    assert clock() == at_time(NOW + 3.0)


def replicas(store: Store, clock: FakeClock, egress_group: str) -> tuple[CastPacer, CastPacer]:
    def replica() -> CastPacer:
        return CastPacer(
            store, R, 30, clock=clock, sleep=sleeping_on(clock), egress_group=egress_group
        )

    return replica(), replica()


async def test_replicas_in_one_egress_group_divide_the_ip_budget_among_all_their_keys(
    store: Store, clock: FakeClock
):
    here, there = replicas(store, clock, egress_group="nat")
    assert await send(here) == SendNow(rate=pytest.approx(R), checked=None)
    for i in range(3):
        await send(there, f"cast_{i}")  # keys only the other replica sends for
    clock.advance(CLUSTER_VIEW_SECONDS)
    assert await send(here) == SendNow(rate=pytest.approx((30 - READ_FLOOR) / 4), checked=None)


async def test_replicas_without_an_egress_group_each_divide_their_own_budget(
    store: Store, clock: FakeClock
):
    here, there = replicas(store, clock, egress_group="")
    for i in range(3):
        await send(there, f"cast_{i}")
    clock.advance(CLUSTER_VIEW_SECONDS)
    assert await send(here) == SendNow(rate=pytest.approx(R), checked=None)


async def test_keys_idle_for_longer_than_active_seconds_no_longer_share_the_group_budget(
    store: Store, clock: FakeClock
):
    here, there = replicas(store, clock, egress_group="nat")
    for i in range(3):
        await send(there, f"cast_{i}")
    clock.advance(ACTIVE_SECONDS + CLUSTER_VIEW_SECONDS)
    assert await send(here) == SendNow(rate=pytest.approx(R), checked=None)


def test_a_429_drawn_by_the_ip_slows_its_budget_by_one_request_per_second_for_the_ceiling_hold():
    state = after_ip_rate_limited(LimitState(), 30.0, NOW, retry_after=2.0)
    assert (state.rate, state.blocked_until) == (29.0, NOW + 2.0)
    assert current_rate(state, 30.0, NOW + CEILING_HOLD_SECONDS - 1) == 29.0
    assert current_rate(state, 30.0, NOW + CEILING_HOLD_SECONDS) == 30.0


def test_the_429s_of_one_burst_slow_the_ip_budget_down_once():
    once = after_ip_rate_limited(LimitState(), 30.0, NOW, None)
    again = after_ip_rate_limited(once, 30.0, NOW + 0.5, None)
    assert (once.rate, again.rate) == (29.0, 29.0)
    assert again.blocked_until == NOW + 0.5 + DEFAULT_RETRY_AFTER


def test_a_key_at_its_full_rate_may_not_leave_late_for_the_ip_budget():
    assert lateness_allowed(R, SECOND / R) == pytest.approx(0.0, abs=1e-9)


def test_a_key_at_its_share_may_leave_as_late_as_its_limit_still_holds_up_to_the_horizon():
    assert lateness_allowed(R, SECOND / 5) == pytest.approx(R * SECOND / 5 - SECOND)
    assert lateness_allowed(R, SECOND / 1.4) == HORIZON


def test_r_plus_one_sends_leaving_as_late_as_allowed_still_span_the_limits_second():
    interval = SECOND / 6
    late = lateness_allowed(R, interval)
    first, last = 0.0 + late, R * interval  # the first as late as allowed, the last on time
    assert last - first >= SECOND - 1e-9


async def test_a_send_late_for_its_ip_slot_keeps_its_key_slot_while_its_key_has_room(
    store: Store, clock: FakeClock
):
    pacer = CastPacer(store, R, 30, clock=clock, sleep=sleeping_on(clock, 0.05))
    for i in range(19):
        await pacer.ip.share(f"cast_{i}")  # 20 keys share the budget: cast_a is paced at 1.4/s
    await pacer.before_poll()  # the IP's next slot is SECOND / 30 away
    assert await send(pacer) == SendNow(rate=(30 - READ_FLOOR) / 20, checked=None)
    assert clock() == at_time(NOW + SECOND / 30 + 2 * 0.05)  # not a key interval later


async def test_a_key_at_its_full_rate_sends_though_the_store_round_trip_makes_it_a_little_late(
    store: Store,
):
    ticking = FakeClock(NOW)

    def clock() -> float:  # every look at the clock is 1 ms later: a store round trip between
        ticking.advance(0.001)
        return ticking()

    pacer = CastPacer(store, R, 1000, clock=clock, sleep=sleeping_on(ticking))
    turn = await asyncio.wait_for(send(pacer), timeout=5)
    assert turn == SendNow(rate=R, checked=None)


# The last check before a send, and slow stores --------------------------------------------------
class SlowStore:
    """A real store whose every call takes `rtt` seconds of the fake clock (a MongoDB that far
    away, or a store busy with other writes)."""

    def __init__(self, store: Store, clock: FakeClock, rtt: float) -> None:
        self._store, self._clock, self.rtt = store, clock, rtt

    def __getattr__(self, name: str) -> object:
        method = getattr(self._store, name)

        async def call(*args: object, **kwargs: object) -> object:
            result = await method(*args, **kwargs)
            self._clock.advance(self.rtt)
            return result

        return call


def slow_store(store: Store, clock: FakeClock, rtt: float) -> Store:
    return cast(Store, SlowStore(store, clock, rtt))


def taking(clock: FakeClock, *durations: float) -> Callable[[], Awaitable[float]]:
    """A last check whose calls take `durations` (then the last one again): when each ended."""
    left = list(durations)

    async def check() -> float:
        clock.advance(left.pop(0) if len(left) > 1 else left[0])
        return clock()

    return check


async def ip_slot(store: Store, group: str) -> float:
    return (await store.recent_slots(IP_PREFIX + group, since=0.0))[IP_PREFIX + group]


@pytest.mark.parametrize("egress_group", ["", "nat-1"])
async def test_a_key_at_its_full_rate_sends_though_every_store_round_trip_takes_30_ms(
    store: Store, clock: FakeClock, egress_group: str
):
    slow = slow_store(store, clock, rtt=0.03)
    pacer = CastPacer(slow, R, 30, clock=clock, sleep=sleeping_on(clock), egress_group=egress_group)
    times = []
    for _ in range(12):
        assert isinstance(await asyncio.wait_for(send(pacer), timeout=5), SendNow)
        times.append(clock())
    assert max_in_any_window(times, 1.0 + JITTER) <= R


async def test_the_last_check_ends_before_the_ip_slot_and_only_the_send_follows_the_slot(
    store: Store, clock: FakeClock
):
    pacer = CastPacer(store, R, 30, clock=clock, sleep=sleeping_on(clock), egress_group="nat-1")
    check = taking(clock, 0.015)
    for key in ("cast_a", "cast_b", "cast_c"):
        turn = await pacer.before_send(key, check)
        assert isinstance(turn, SendNow)
        slot = await ip_slot(store, "nat-1")
        assert turn.checked <= slot <= clock() <= slot + MAX_LATENESS / 2


async def test_a_check_slower_than_any_before_makes_its_send_take_a_later_slot_not_leave_late(
    store: Store, clock: FakeClock
):
    pacer = CastPacer(store, R, 30, clock=clock, sleep=sleeping_on(clock), egress_group="nat-1")
    check = taking(clock, 0.001, 0.08, 0.08)
    await pacer.before_send("cast_a", check)
    turn = await pacer.before_send("cast_b", check)  # its first check takes 80 ms
    assert isinstance(turn, SendNow)
    slot = await ip_slot(store, "nat-1")
    assert slot >= NOW + 0.08 and clock() - slot <= MAX_LATENESS / 2


async def test_a_store_slower_than_the_longest_lead_sends_late_rather_than_never(
    store: Store, clock: FakeClock
):
    slow = slow_store(store, clock, rtt=MAX_LEAD)
    pacer = CastPacer(slow, R, 30, clock=clock, sleep=sleeping_on(clock), egress_group="nat-1")
    assert isinstance(await asyncio.wait_for(send(pacer), timeout=5), SendNow)
