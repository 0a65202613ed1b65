"""The Cast account at a glance (issue 22): cached account calls, key states on both stores, the
user-facing reasons of key-state refusals, the credits metric and the usage chart."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date

import pytest

from app.cast.account import PAGE_TIMEOUT_SECONDS, CastAccountInfo
from app.cast.client import CastClient, CastError
from app.cast.repository import KeyStates
from app.cast.schemas import UsageDay
from app.cast.senders import SenderDirectory
from app.devkit.fake_cast import FakeCast
from app.locations.chart import usage_chart, usage_days
from app.metrics import Counters
from app.store import Store
from tests.support.doubles import NothingShared, no_pacing
from tests.support.units import FakeClock, cast_client_over

KEY = "cast_" + "cd" * 32


@pytest.fixture
def cast() -> FakeCast:
    fake = FakeCast({KEY})
    fake.approve(KEY, "MYBRAND", "sms")
    fake.usage_days = [{"date": "2026-11-30", "total": 3, "sent": 2, "failed": 1, "parts": 4}]
    return fake


@pytest.fixture
async def client(cast: FakeCast) -> AsyncIterator[CastClient]:
    async with cast_client_over(cast.app) as client:
        yield client


def info(
    client: CastClient,
    store: Store,
    counters: Counters | None = None,
    pace: Callable[[], Awaitable[None]] = no_pacing,
    *,
    timeout: float = PAGE_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> CastAccountInfo:
    senders = SenderDirectory(client, no_pacing, NothingShared())
    return CastAccountInfo(
        client,
        senders,
        KeyStates(store),
        counters or Counters(),
        pace,
        timeout=timeout,
        clock=clock,
    )


async def test_the_account_is_read_once_then_served_from_the_cache(client, cast, store):
    account = info(client, store)

    first = await account.snapshot(KEY)
    again = await account.snapshot(KEY)

    assert (first.credits, first.profile.billing_type) == (1000, "topup")
    assert [s.sender_id for s in first.senders] == ["MYBRAND"]
    assert (first.usage.total_sent, first.usage.total_parts) == (2, 4)
    assert first.problems == [] and again == first
    assert sorted(cast.account_requests) == ["balance", "profile", "sender-ids", "usage"]


async def test_account_calls_wait_for_the_per_ip_budget_not_the_keys_send_budget(client, store):
    paced: list[str] = []

    async def pace() -> None:
        paced.append("poll budget")

    await info(client, store, pace=pace).snapshot(KEY)

    assert paced == ["poll budget"] * 3  # balance, profile, usage (the sender list: its own)


async def test_a_slow_cast_costs_the_page_at_most_the_timeout(client, store):
    async def slow() -> None:
        await asyncio.sleep(2)

    started = time.monotonic()
    snapshot = await info(client, store, pace=slow, timeout=0.2).snapshot(KEY)

    assert time.monotonic() - started < 1.0
    assert snapshot.credits is None and "credits: Cast did not answer in time" in snapshot.problems


async def test_a_refused_key_is_marked_broken_with_its_reason_until_a_check_succeeds(
    client, cast, store
):
    account = info(client, store)
    cast.api_keys.clear()

    broken = await account.snapshot(KEY)
    cast.api_keys.add(KEY)
    await account.refresh_credits(KEY)

    assert broken.state is not None and broken.state.code == "INVALID_API_KEY"
    assert broken.state.reason.startswith("Cast does not accept this API key")
    assert await account.states.get(KEY) is None


async def test_a_refused_key_costs_one_cast_call_however_often_the_account_is_read(
    client, cast, store
):
    account = info(client, store)
    cast.api_keys.clear()

    views = [await account.snapshot(KEY) for _ in range(30)]

    assert cast.refused_account_requests == ["balance"]
    assert all(view.state is not None and view.credits is None for view in views)
    assert "senders: not read, Cast refuses the key" in views[-1].problems


async def test_a_failed_read_is_asked_again_after_thirty_seconds(client, cast, store):
    clock = FakeClock()
    account = info(client, store, clock=clock)
    cast.api_keys.clear()
    await account.snapshot(KEY)
    cast.api_keys.add(KEY)

    clock.advance(29)
    cached = await account.snapshot(KEY)
    clock.advance(2)
    asked = await account.snapshot(KEY)

    assert cached.credits is None and asked.credits == 1000


async def refresh_briefly(account: CastAccountInfo) -> None:
    refresher = asyncio.create_task(account.keep_credits_fresh(interval=0.01))
    await asyncio.sleep(0.1)
    refresher.cancel()
    await asyncio.gather(refresher, return_exceptions=True)


async def test_the_credits_refresher_skips_a_revoked_key(client, cast, store):
    account = info(client, store)
    account.used(KEY)
    revoked = CastError("x", status=403, code="API_KEY_REVOKED", retryable=False)
    await account.states.refused(KEY, revoked)

    await refresh_briefly(account)

    assert cast.account_requests == []


async def test_the_credits_refresher_still_reads_an_out_of_credits_key(client, cast, store):
    account = info(client, store)
    account.used(KEY)
    broke = CastError("x", status=402, code="INSUFFICIENT_CREDITS", retryable=False)
    await account.states.refused(KEY, broke)

    refresher = asyncio.create_task(account.keep_credits_fresh(interval=0.01))
    try:  # 1000 credits: the mark is cleared (waited for: a busy machine is slow to get there)
        async with asyncio.timeout(10):
            while await account.states.get(KEY) is not None:
                await asyncio.sleep(0.01)
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)

    assert "balance" in cast.account_requests


async def test_out_of_credits_stays_until_the_balance_is_above_zero_or_a_send_works(
    client, cast, store
):
    account = info(client, store)
    refusal = CastError("x", status=402, code="INSUFFICIENT_CREDITS", retryable=False)
    await account.states.refused(KEY, refusal)
    cast.credits = 0

    await account.refresh_credits(KEY)
    still = await account.states.get(KEY)
    cast.credits = 50
    await account.refresh_credits(KEY)

    assert still is not None
    assert still.reason == "The Cast account is out of credits — top it up, then resend"
    assert await account.states.get(KEY) is None


async def test_a_working_send_clears_the_mark_in_every_process(store):
    marking, other = KeyStates(store), KeyStates(store)
    refusal = CastError("x", status=403, code="API_KEY_REVOKED", retryable=False)
    await marking.refused(KEY, refusal)

    await other.worked(KEY)

    assert await marking.get(KEY) is None


def test_key_state_refusals_are_not_retried_and_read_as_actions():
    for status, code, words in [
        (402, "CREDIT_LIMIT_REACHED", "credit limit"),
        (401, "INVALID_API_KEY", "valid key"),
        (403, "API_KEY_EXPIRED", "expired"),
        (403, "USER_INACTIVE", "disabled"),
        (403, "IP_NOT_WHITELISTED", "allow-list"),
    ]:
        error = CastError("raw", status=status, code=code, retryable=False)
        assert error.key_state and words in error.reason, code
    assert not CastError("x", status=403, code="CHANNEL_NOT_ALLOWED", retryable=False).key_state


async def test_a_balance_read_sets_the_credits_metric_per_key_fingerprint(client, store):
    counters = Counters()

    await info(client, store, counters=counters).credits(KEY)

    assert b'bridge_cast_credits{key="' in counters.render()
    assert KEY.encode() not in counters.render()


def test_the_chart_has_thirty_days_oldest_first_with_empty_days_zero():
    rows = [UsageDay(date="2026-11-30", sent=5, failed=1, parts=7)]

    days = usage_days(rows, date(2026, 11, 30))
    chart = usage_chart(days)

    assert len(days) == 30 and days[0].day == date(2026, 11, 1)
    assert (days[-1].sent, days[-1].failed, days[0].sent) == (5, 1, 0)
    assert chart.bars[-1].tip == "2026-11-30: 5 sent, 1 failed, 7 parts"
    assert chart.bars[-1].failed_y == 0.0  # the busiest day reaches the top
    assert "6 failed" not in chart.label and "5 sent, 1 failed" in chart.label
