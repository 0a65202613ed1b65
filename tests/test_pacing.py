"""Cast pacing: per key for every pacer on one store (several bridge processes), per process for
the per-IP budget, and slowing a key down when Cast answers 429."""

import asyncio
import time

import pytest

from app.cast.keys import key_label
from app.cast.pacing import (
    BACKLOG_SECONDS,
    CEILING_HOLD_SECONDS,
    JITTER,
    LEAD,
    MAX_DEPARTURE,
    MAX_SLOT_LATENESS,
    RECOVERY_STEP_SECONDS,
    RETURN_AHEAD_SECONDS,
    SLACK,
    WINDOW,
    CastPacer,
    after_rate_limited,
    current_rate,
)
from app.devkit.fake_cast import max_in_any_window
from app.pacing import LOG_COLLECTION, LimitState, LogShape, next_time
from app.store import Store

NOW = 1_700_000_000.0


async def send_times(pacers: list[CastPacer], count: int, key: str) -> list[float]:
    times: list[float] = []

    async def send(pacer: CastPacer) -> None:
        await pacer.before_send(key)
        times.append(time.monotonic())

    await asyncio.gather(*(send(pacers[i % len(pacers)]) for i in range(count)))
    return sorted(times)


# Per key, cluster-wide --------------------------------------------------------------------
async def test_two_pacers_on_one_store_never_let_a_key_send_more_than_r_per_second(store: Store):
    pacers = [CastPacer(store, per_key_rate=20, ip_rate=1000) for _ in range(2)]
    times = await send_times(pacers, 45, "cast_a")
    # leaving >= 1 s + JITTER apart for every R + 1: Cast sees <= R in any second
    assert max_in_any_window(times, 1.0 + JITTER) <= 20
    assert times[-1] - times[0] >= 2 * WINDOW - MAX_SLOT_LATENESS


async def test_a_send_that_leaves_late_delays_the_send_r_after_it(store: Store, monkeypatch):
    late = CastPacer(store, per_key_rate=10, ip_rate=1000)
    real_room = late._ip_room
    busy = [0.05]

    async def slow_room() -> None:  # the event loop was busy once: this send is 50 ms late
        await asyncio.sleep(busy.pop() if busy else 0.0)
        await real_room()

    monkeypatch.setattr(late, "_ip_room", slow_room)
    await late.before_send("cast_a")
    first = time.monotonic()
    other = CastPacer(store, per_key_rate=10, ip_rate=1000)
    for _ in range(10):
        await other.before_send("cast_a")
    assert time.monotonic() - first >= WINDOW - MAX_SLOT_LATENESS - LEAD  # let go LEAD early


async def test_different_keys_do_not_wait_for_each_other(store: Store):
    pacer = CastPacer(store, per_key_rate=2, ip_rate=1000)
    started = time.monotonic()
    await asyncio.gather(*(pacer.before_send(f"cast_{i}") for i in range(10)))
    assert time.monotonic() - started < 1.5  # one key alone would need 4.5 s


async def test_a_send_whose_request_left_late_delays_the_send_r_after_it(store: Store):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    ticket = await pacer.before_send("cast_a")
    # the request stalled on its way out, it left 60 ms after its time: it may arrive late
    await asyncio.sleep(ticket.slot + 0.06 - time.time())
    await pacer.left(ticket)
    slots = [(await pacer.before_send("cast_a")).slot for _ in range(10)]
    assert slots[-1] - ticket.slot >= WINDOW + 0.06 - MAX_DEPARTURE


async def test_a_slow_answer_from_cast_does_not_slow_the_key_down(store: Store):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)

    async def send() -> float:
        ticket = await pacer.before_send("cast_a")
        await pacer.left(ticket)  # the request left on time ...
        await asyncio.sleep(0.25)  # ... and Cast took 250 ms to answer
        return ticket.slot

    slots = sorted(await asyncio.gather(*(send() for _ in range(6))))
    assert slots[-1] - slots[0] < 5 * WINDOW / 10 + 0.02


def test_the_sends_after_a_late_one_catch_up_with_their_times_a_window_back():
    shape = LogShape(limit=3, window=1.0, spacing=0.3)
    times = [0.05, 1 / 3, 2 / 3]  # the first of three sends 1/3 s apart left 50 ms late
    after = []
    for _ in range(3):
        after.append(next_time(times, 0.0, shape))
        times = [*times[1:], after[-1]]
    # the one a window after the late send waits for it; the next loses less; then on time
    assert after == pytest.approx([1.05, 1.35, 5 / 3])


# Per IP, per process ------------------------------------------------------------------------
async def test_sends_and_polls_together_never_exceed_the_ip_rate_in_any_second(store: Store):
    pacer = CastPacer(store, per_key_rate=1000, ip_rate=15)
    times: list[float] = []

    async def call(waiting) -> None:
        await waiting
        times.append(time.monotonic())

    sends = [call(pacer.before_send(f"cast_{i}")) for i in range(20)]
    polls = [call(pacer.before_poll()) for _ in range(12)]
    await asyncio.gather(*sends, *polls)
    assert max_in_any_window(times, 1.0) <= 15


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


async def test_a_429_slows_the_key_down_for_every_pacer_on_the_store(store: Store):
    first, second = (CastPacer(store, per_key_rate=10, ip_rate=1000) for _ in range(2))
    assert await first.rate_limited("cast_a", paced_at=10.0, retry_after=0.0) == 8.0
    assert (await second.before_send("cast_a")).rate == 8.0
    assert await second.rates() == {key_label("cast_a"): 8.0}


async def test_retry_after_holds_the_key_back_for_every_pacer(store: Store):
    started = time.monotonic()
    await CastPacer(store, per_key_rate=10, ip_rate=1000).rate_limited("cast_a", 10.0, 0.4)
    await CastPacer(store, per_key_rate=10, ip_rate=1000).before_send("cast_a")
    assert time.monotonic() - started >= 0.4 - MAX_SLOT_LATENESS


async def test_two_pacers_answering_the_same_burst_of_429s_slow_down_once(store: Store):
    pacers = [CastPacer(store, per_key_rate=10, ip_rate=1000) for _ in range(2)]
    await asyncio.gather(*(p.rate_limited("cast_a", 10.0, 0.0) for p in pacers * 2))
    assert await pacers[0].rates() == {key_label("cast_a"): 8.0}


# Backlog: sends that would only wait give their worker slot back ------------------------------
async def test_sends_beyond_a_keys_backlog_come_back_later_spread_at_its_rate(
    store: Store,
):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    waiting = [asyncio.create_task(pacer.before_send("cast_a")) for _ in range(25)]
    await asyncio.sleep(0.05)
    try:
        assert pacer.defer_until("cast_b", NOW) is None  # another key has no backlog
        first, second = pacer.defer_until("cast_a", NOW), pacer.defer_until("cast_a", NOW)
        assert first is not None and first >= NOW + BACKLOG_SECONDS - RETURN_AHEAD_SECONDS
        assert second == pytest.approx(first + 1 / 10)  # faster than it can send: never dry
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


def test_a_burst_admitted_before_any_send_waits_fills_the_backlog_then_is_deferred(
    store: Store,
):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    answers = [pacer.admit("cast_a", NOW) for _ in range(30)]
    admitted = int(BACKLOG_SECONDS * 10)
    assert answers[:admitted] == [None] * admitted
    deferred = answers[admitted:]
    assert None not in deferred and deferred[0] >= NOW + BACKLOG_SECONDS - RETURN_AHEAD_SECONDS
    assert deferred[1] == pytest.approx(deferred[0] + 1 / 10)
    assert pacer.admit("cast_b", NOW) is None  # another key has its own backlog


def test_a_keys_admitted_backlog_drains_with_time(store: Store):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    for _ in range(int(BACKLOG_SECONDS * 10)):
        pacer.admit("cast_a", NOW)
    assert pacer.admit("cast_a", NOW) is not None
    assert pacer.admit("cast_a", NOW + 0.15) is None  # one send's interval has passed


async def test_a_send_held_to_its_gate_leaves_no_earlier_than_1s_and_jitter_after_the_send_r_before(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    """Measured: the requests leave at least 1 s + JITTER + SLACK apart for every R + 1.

    And the room a send did not use is given on, read from the key's log (its own times, not
    when a send woke up): the send's time there becomes when it left (without the room given
    on, it would stay the latest it could have left, MAX_DEPARTURE after its gate), and wherever
    the window after that time is what holds the send R after it, the log gives that send a gate
    less than WINDOW - MAX_DEPARTURE / 2 after it. Not measured at the later send's departure:
    on a busy machine a send woken up late widens its own span, holds the send after it by the
    log's spacing, or reserves late and asks for a later time itself; none of that is the
    window's doing. (Nor against the test's own clock reading as the send left: the process may
    be preempted between that reading and the pacer's.)"""
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    reserved: list[tuple[float, float, LogShape]] = []  # asked for, given, shape: every reservation
    reserve = pacer._repo.reserve_in_log

    async def recorded(name: str, *, now: float, shape: LogShape) -> float:
        reserved.append((now, await reserve(name, now=now, shape=shape), shape))
        return reserved[-1][1]

    monkeypatch.setattr(pacer._repo, "reserve_in_log", recorded)
    left: list[float] = []
    logged: list[float] = []  # each send's time in the log once it said it left
    scheduled: list[tuple[float, float, LogShape]] = []  # each send's last reservation
    for _ in range(21):
        ticket = await pacer.before_send("cast_a")
        scheduled.append(reserved[-1])
        departure = pacer.departure(ticket)
        await departure.ready()  # the request waits at the connection, then leaves at once
        left.append(time.time())
        await departure.left()
        reported = time.time()
        log = await store.get_doc(LOG_COLLECTION, ticket.name)
        assert log is not None
        logged.append(max(log.data["times"]))  # the latest send's time is the last in its log
        assert left[-1] <= logged[-1] <= reported  # when it left, not the latest it could have
    spans = [b - a for a, b in zip(left, left[10:], strict=False)]
    assert min(spans) >= 1.0 + JITTER + SLACK
    for k, (asked, slot, shape) in enumerate(scheduled[10:]):
        if slot > max(asked, logged[k + 9] + shape.spacing):  # the window after send k held it
            gate = slot - MAX_DEPARTURE
            assert gate - logged[k] < WINDOW - MAX_DEPARTURE / 2  # its unused room: given on


async def test_a_send_is_let_go_before_its_gate_so_its_request_is_ready_when_it_opens(
    store: Store,
):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    for _ in range(10):
        await pacer.before_send("cast_a")
    ticket = await pacer.before_send("cast_a")  # the eleventh waits for the first's window
    assert ticket.gate - time.time() == pytest.approx(LEAD, abs=MAX_SLOT_LATENESS)
