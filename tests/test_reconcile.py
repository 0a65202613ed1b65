"""Receipts by reconciliation: the real reconciler and Cast client against the dev kit's fake
Cast (in-process), on both stores."""

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from app.cast.client import CastClient
from app.cast.pacing import CastPacer
from app.cast.schemas import Channel, SendRequest
from app.devkit.fake_cast import FakeCast
from app.devkit.harness import CAST_KEY
from app.outbound.reconcile import KEEP_SECONDS, LOG_ROUNDS, ReceiptReconciler
from app.outbound.repository import ReceiptLedgers
from app.outbound.schemas import LoggedReceipt, OutboundMessage, Part
from app.store import Store
from tests.support.doubles import (
    ignore_rate_limit,
    key_sent_nothing_since,
    no_pacing,
    nothing_to_check,
)
from tests.support.units import FakeClock, cast_client_over

INTERVAL = 10.0
_ids = itertools.count(1)


@pytest.fixture
def cast() -> FakeCast:
    unlimited = 1e9
    cast = FakeCast({CAST_KEY}, per_key_rate=unlimited, ip_rate=unlimited, ip_burst=unlimited)
    cast.approve(CAST_KEY, "CASTTEST", "sms")
    cast.approve(CAST_KEY, "+639170000000", "sim")
    return cast


@pytest.fixture
async def client(cast: FakeCast) -> AsyncIterator[CastClient]:
    async with cast_client_over(cast.app) as client:
        yield client


def reconciler(store: Store, client: CastClient, clock: FakeClock) -> ReceiptReconciler:
    return ReceiptReconciler(
        ReceiptLedgers(store),
        client,
        no_pacing,
        ignore_rate_limit,
        key_sent_nothing_since,
        INTERVAL,
        clock,
    )


async def sent(client: CastClient, clock: FakeClock, channel: Channel = "sms") -> OutboundMessage:
    """A one-part message Cast accepted, waiting for its receipt."""
    n = next(_ids)
    sender = "CASTTEST" if channel == "sms" else "+639170000000"
    request = SendRequest(to="+639171234567", message=f"hello {n}", sender_id=sender)
    result = await client.send_sms(CAST_KEY, request, idempotency_key=f"k{n}", channel=channel)
    part = Part(text=request.message, cast_message_id=result.message_id, channel=channel)
    return OutboundMessage(
        message_id=f"m{n}",
        location_id="loc-1",
        phone="+639171234567",
        parts=[part],
        received_at=clock(),
        stage="poll",
        accepted_at=clock(),
        polls=1,
    )


def cast_id(message: OutboundMessage) -> str:
    cast_message_id = message.parts[0].cast_message_id
    assert cast_message_id is not None
    return cast_message_id


async def test_a_lone_message_is_asked_by_status(store, client, cast, clock):
    message = await sent(client, clock)

    lookup = await reconciler(store, client, clock).look_up(CAST_KEY, message)

    assert lookup.by_status == {cast_id(message)} and not lookup.settled
    assert cast.api_calls["logs"] == 0


def paced_reconciler(store: Store, client: CastClient, pacer: CastPacer, clock: FakeClock):
    return ReceiptReconciler(
        ReceiptLedgers(store),
        client,
        no_pacing,
        ignore_rate_limit,
        pacer.sent_since,
        INTERVAL,
        clock,
    )


async def test_a_lone_message_whose_key_sent_nothing_since_is_asked_by_status(
    store, client, cast, clock
):
    pacer = CastPacer(store, 10, 1000, clock=clock)
    await pacer.before_send(CAST_KEY, nothing_to_check)  # its own send's slot
    message = await sent(client, clock)

    lookup = await paced_reconciler(store, client, pacer, clock).look_up(CAST_KEY, message)

    assert lookup.by_status == {cast_id(message)}
    assert cast.api_calls["logs"] == 0


async def test_a_message_alone_here_waits_for_the_logs_when_its_key_sent_again_since(
    store, client, cast, clock
):
    pacer = CastPacer(store, 10, 1000, clock=clock)
    message = await sent(client, clock)
    clock.advance(1.0)
    await pacer.before_send(
        CAST_KEY, nothing_to_check
    )  # the key's next send, in this process or another

    lookup = await paced_reconciler(store, client, pacer, clock).look_up(CAST_KEY, message)

    assert set(lookup.settled) == {cast_id(message)} and not lookup.by_status
    assert (cast.api_calls["logs"], cast.api_calls["status"]) == (1, 0)


async def test_one_logs_read_settles_every_waiting_part_of_the_key_it_lists(
    store, client, cast, clock
):
    messages = [await sent(client, clock) for _ in range(3)]
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, messages[0])  # the first to wait is lone

    lookups = [await receipts.look_up(CAST_KEY, m) for m in messages[1:]]

    assert [set(lookup.settled) for lookup in lookups] == [{cast_id(m)} for m in messages[1:]]
    assert all(
        lookup.settled[cast_id(m)].status == "delivered"
        for lookup, m in zip(lookups, messages[1:], strict=True)
    )
    assert cast.api_calls["logs"] == 1 and cast.api_calls["status"] == 0


async def test_a_carrier_rejection_in_the_logs_settles_the_part_as_failed(
    store, client, cast, clock
):
    cast.next_dlr.append([{"status": "sent"}])
    first = await sent(client, clock)
    cast.next_dlr.append([{"status": "undelivered", "dlr_status": "REJECTD"}])
    rejected = await sent(client, clock)
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)

    lookup = await receipts.look_up(CAST_KEY, rejected)

    result = lookup.settled[cast_id(rejected)]
    assert (result.status, result.dlr_status) == ("undelivered", "REJECTD")


async def test_a_part_the_logs_list_without_a_receipt_waits_for_the_next_round(
    store, client, cast, clock
):
    cast.next_dlr.extend([[{"status": "sent"}], [{"status": "sent"}]])
    first, second = await sent(client, clock), await sent(client, clock)
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)

    lookup = await receipts.look_up(CAST_KEY, second)

    assert lookup.waiting and not lookup.settled and not lookup.by_status


async def test_a_sim_part_is_asked_by_status_as_the_logs_do_not_list_it(store, client, cast, clock):
    await sent(client, clock)
    sim = await sent(client, clock, channel="sim")

    lookup = await reconciler(store, client, clock).look_up(CAST_KEY, sim)

    assert lookup.by_status == {cast_id(sim)}
    assert cast.api_calls["logs"] == 0


async def test_a_part_absent_from_the_logs_is_asked_by_status_after_a_few_polls(
    store, client, cast, clock
):
    first, absent = await sent(client, clock), await sent(client, clock)
    cast.hidden_from_logs.add(cast_id(absent))
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)

    waited = []
    for polls in range(1, LOG_ROUNDS + 2):
        absent.polls = polls
        lookup = await receipts.look_up(CAST_KEY, absent)
        waited.append(lookup.waiting and cast_id(absent) not in lookup.by_status)
        clock.advance(INTERVAL)

    assert waited == [True] * LOG_ROUNDS + [False]
    assert lookup.by_status == {cast_id(absent)}


async def test_a_round_pages_past_500_entries_to_the_part_it_waits_for(store, client, cast, clock):
    oldest = await sent(client, clock)
    for _ in range(600):
        await sent(client, clock)
    newest = await sent(client, clock)
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, newest)

    lookup = await receipts.look_up(CAST_KEY, oldest)

    assert set(lookup.settled) == {cast_id(oldest)}
    assert [q["offset"] for q in cast.logs_requests] == ["0", "500"]
    assert {q["limit"] for q in cast.logs_requests} == {"500"}


async def test_a_key_whose_logs_read_fails_has_its_parts_asked_by_status(
    store, client, cast, clock
):
    first, second = await sent(client, clock), await sent(client, clock)
    cast.logs_errors = 1
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)

    lookup = await receipts.look_up(CAST_KEY, second)

    assert lookup.by_status == {cast_id(second)}
    assert cast.api_calls["logs"] == 1


async def test_a_429_to_a_logs_read_is_reported_to_the_ip_budget(store, clock):
    cast = FakeCast({CAST_KEY}, per_key_rate=1e9, ip_rate=2, ip_burst=2)  # two sends use it up
    cast.approve(CAST_KEY, "CASTTEST", "sms")
    told: list[float | None] = []

    async def ip_rate_limited(retry_after: float | None) -> None:
        told.append(retry_after)

    async with cast_client_over(cast.app) as client:
        first, second = await sent(client, clock), await sent(client, clock)
        receipts = ReceiptReconciler(
            ReceiptLedgers(store),
            client,
            no_pacing,
            ip_rate_limited,
            key_sent_nothing_since,
            INTERVAL,
            clock,
        )
        await receipts.look_up(CAST_KEY, first)
        lookup = await receipts.look_up(CAST_KEY, second)

    assert told == [1.0]
    assert lookup.by_status == {cast_id(second)}


async def test_the_next_round_after_a_failed_read_uses_the_logs_again(store, client, cast, clock):
    first, second = await sent(client, clock), await sent(client, clock)
    cast.logs_errors = 1
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)
    await receipts.look_up(CAST_KEY, second)
    clock.advance(INTERVAL)

    lookup = await receipts.look_up(CAST_KEY, second)

    assert set(lookup.settled) == {cast_id(second)} and not lookup.by_status
    assert cast.api_calls["logs"] == 2


async def test_processes_sharing_a_store_read_a_keys_logs_once_per_round(
    store, client, cast, clock
):
    first, second, third = [await sent(client, clock) for _ in range(3)]
    one, other = reconciler(store, client, clock), reconciler(store, client, clock)
    await one.look_up(CAST_KEY, first)
    await one.look_up(CAST_KEY, second)  # reads the round's logs
    await other.look_up(CAST_KEY, first)  # lone in its own process: by status

    lookup = await other.look_up(CAST_KEY, third)

    assert set(lookup.settled) == {cast_id(third)}
    assert cast.api_calls["logs"] == 1


async def test_a_restarted_process_settles_from_the_stored_ledger_without_asking_cast(
    store, client, cast, clock
):
    first, second = await sent(client, clock), await sent(client, clock)
    before = reconciler(store, client, clock)
    await before.look_up(CAST_KEY, first)
    await before.look_up(CAST_KEY, second)
    after = reconciler(store, client, clock)  # a new process: nothing in memory
    await after.look_up(CAST_KEY, second)

    lookup = await after.look_up(CAST_KEY, first)

    assert set(lookup.settled) == {cast_id(first)}
    assert cast.api_calls["logs"] == 1 and cast.api_calls["status"] == 0


async def test_another_round_is_read_once_the_interval_has_passed(store, client, cast, clock):
    cast.next_dlr.extend([[{"status": "sent"}, {"status": "delivered"}]] * 2)
    first, second = await sent(client, clock), await sent(client, clock)
    receipts = reconciler(store, client, clock)
    await receipts.look_up(CAST_KEY, first)
    assert (await receipts.look_up(CAST_KEY, second)).waiting
    clock.advance(INTERVAL)

    lookup = await receipts.look_up(CAST_KEY, second)

    assert set(lookup.settled) == {cast_id(second)}
    assert cast.api_calls["logs"] == 2


async def test_overlapping_reads_of_a_key_both_reach_its_ledger(store):
    ledgers = ReceiptLedgers(store)

    def found(cast_id: str) -> dict[str, LoggedReceipt]:
        return {cast_id: LoggedReceipt(status="delivered", dlr_status="DELIVRD", seen_at=100.0)}

    await asyncio.gather(
        *(ledgers.merge("key", found(f"CAST{i}"), read_at=100.0, keep_since=0) for i in range(5))
    )

    assert set((await ledgers.get("key")).entries) == {f"CAST{i}" for i in range(5)}


async def test_a_ledger_forgets_entries_not_listed_for_ten_minutes(store):
    ledgers = ReceiptLedgers(store)
    old = {"CAST1": LoggedReceipt(status="sent", seen_at=100.0)}
    await ledgers.merge("key", old, read_at=100.0, keep_since=0)

    ledger = await ledgers.merge("key", {}, read_at=800.0, keep_since=800.0 - KEEP_SECONDS)

    assert ledger.entries == {} and ledger.read_at == 800.0


async def test_one_claimant_per_round_among_concurrent_processes(store):
    ledgers = ReceiptLedgers(store)

    claims = await asyncio.gather(
        *(ledgers.claim_round("key", now=100.0, interval=INTERVAL) for _ in range(8))
    )

    assert claims.count(True) == 1
    assert await ledgers.claim_round("key", now=100.0 + INTERVAL, interval=INTERVAL)
