"""The outbound worker's state machine: send (Cast) -> poll (delivery receipts) -> report (GHL),
with each retry and deadline branch. A real SQLite store, fake Cast and GHL clients, a fake
clock; each step is one claim of the message, as the worker's loop makes it."""

import pytest

from app.cast.client import CastError
from app.cast.pacing import CastPacer
from app.cast.schemas import StatusResult
from app.devkit.harness import CAST_KEY
from app.ghl.client import GHLError
from app.metrics import Counters
from app.oauth.tokens import TokenService
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage, Part
from app.outbound.worker import OutboundWorker
from app.store import DONE, PENDING, Store, WorkItem
from tests.support.units import (
    DEFAULT,
    FakeCast,
    FakeClock,
    FakeGHL,
    cancel_in_flight,
    install,
    installations,
    outbound_worker,
    step,
    unit_settings,
)

QUEUE = "outbound"
LOCATION = "loc-1"
PHONE = "+639171234567"
DEADLINES = {
    "send_deadline_seconds": 600,
    "status_deadline_seconds": 900,
    "dlr_first_poll_seconds": 15,
    "dlr_max_poll_interval_seconds": 120,
    "dlr_deadline_seconds": 1800,
}
CAST_503 = CastError("Cast answered 503", status=503, code="HTTP_503", retryable=True)
GHL_503 = GHLError("GHL answered 503", status=503)


@pytest.fixture
def cast() -> FakeCast:
    return FakeCast()


def worker_with(store: Store, cast, ghl, clock, **settings: object) -> OutboundWorker:
    config = unit_settings(**(DEADLINES | settings))
    tokens = TokenService(config, store, installations(store), ghl, Counters(), clock=clock)
    # Pacing waits in real time (its own tests cover it): on the fake clock a slot would never come.
    unpaced = CastPacer(store, per_key_rate=1e6, ip_rate=1e6)
    return outbound_worker(config, store, cast, ghl, tokens, unpaced, clock)


@pytest.fixture
def worker(sqlite_store: Store, cast, ghl, clock) -> OutboundWorker:
    return worker_with(sqlite_store, cast, ghl, clock)


@pytest.fixture
def accepted_mode(sqlite_store: Store, cast, ghl, clock) -> OutboundWorker:
    """DELIVERY_STATUS_MODE=accepted: Cast's acceptance is reported as delivered at once."""
    return worker_with(sqlite_store, cast, ghl, clock, delivery_status_mode="accepted")


@pytest.fixture(autouse=True)
async def installed(sqlite_store: Store, clock: FakeClock) -> None:
    await install(installations(sqlite_store), clock(), location_id=LOCATION)


async def accept(store: Store, clock: FakeClock, *texts: str, **fields: object) -> None:
    """GHL's message m1 in the outbox, as the webhook leaves it."""
    message = OutboundMessage(
        message_id="m1",
        location_id=LOCATION,
        phone=PHONE,
        to=PHONE,
        parts=[Part(text=text) for text in texts or ("hello",)],
        received_at=clock(),
        **fields,
    )
    assert await OutboxRepository(store).add(message)


async def process(worker, store, clock) -> tuple[WorkItem, OutboundMessage]:
    item = await step(worker, store, QUEUE, clock)
    return item, OutboundMessage.model_validate(item.data)


def events(message: OutboundMessage) -> list[str]:
    return [event.event for event in message.history]


def reported(ghl: FakeGHL) -> list[tuple[str, str | None]]:
    """(status, error code) of each status update sent to GHL."""
    updates = [args[2] for args in ghl.calls["update_message_status"]]
    return [(u.status, u.error.code if u.error else None) for u in updates]


# Stage 1: send ----------------------------------------------------------------------------------


async def test_a_message_cast_accepts_waits_for_its_first_receipt_poll(
    worker, sqlite_store, cast, ghl, clock
):
    await accept(sqlite_store, clock)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, item.due_at, message.stage) == (PENDING, clock() + 15, "poll")
    assert message.parts[0].cast_message_id == "cast-1"
    ((api_key, request, key, channel),) = cast.calls["send_sms"]
    assert (api_key, request.to, request.message, channel) == (CAST_KEY, PHONE, "hello", "sms")
    assert key == "ghl:m1:1/1"
    assert not ghl.calls


async def test_in_accepted_mode_a_message_cast_accepts_is_reported_delivered_at_once(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.status, message.delivery) == (DONE, "delivered", "accepted")
    assert message.reported and reported(ghl) == [("delivered", None)]


async def test_a_retryable_cast_error_is_retried_with_backoff_within_the_send_deadline(
    worker, sqlite_store, cast, clock
):
    await accept(sqlite_store, clock)
    cast.script("send_sms", CAST_503)
    item, message = await process(worker, sqlite_store, clock)
    assert item.state == PENDING and clock() + 0.5 <= item.due_at <= clock() + 1
    assert (message.stage, message.status, events(message)[-1]) == ("send", None, "cast_retry")


async def test_a_cast_429_is_retried_after_its_retry_after(worker, sqlite_store, cast, clock):
    await accept(sqlite_store, clock)
    cast.script("send_sms", CastError("429", status=429, retryable=True, retry_after=7))
    item, _ = await process(worker, sqlite_store, clock)
    assert (item.state, item.due_at) == (PENDING, clock() + 7)


async def test_a_cast_429_past_the_send_deadline_is_still_waited_out(
    worker, sqlite_store, cast, clock
):
    """A message of a long bulk reaches its turn after the deadline; a 429 then is our pacing's
    miss (the key slows down), not a reason to fail it."""
    await accept(sqlite_store, clock)
    clock.advance(900)
    cast.script("send_sms", CastError("429", status=429, retryable=True, retry_after=1))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, item.due_at, message.status) == (PENDING, clock() + 1, None)


async def test_cast_errors_past_the_send_deadline_fail_the_message_and_report_it(
    worker, sqlite_store, cast, ghl, clock
):
    await accept(sqlite_store, clock)
    cast.script("send_sms", CAST_503, CAST_503)
    await process(worker, sqlite_store, clock)
    clock.advance(600)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "HTTP_503")
    assert (message.error_message or "").startswith("Gave up after 600s")
    assert reported(ghl) == [("failed", "HTTP_503")]


async def test_a_permanent_cast_error_fails_the_message_at_once_and_reports_it(
    worker, sqlite_store, cast, ghl, clock
):
    await accept(sqlite_store, clock)
    cast.script("send_sms", CastError("400", status=400, code="INVALID_NUMBER", retryable=False))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "INVALID_NUMBER")
    assert reported(ghl) == [("failed", "INVALID_NUMBER")]


async def test_a_retry_sends_only_the_parts_cast_has_not_accepted_under_the_same_keys(
    worker, sqlite_store, cast, clock
):
    await accept(sqlite_store, clock, "one", "two")
    cast.script("send_sms", DEFAULT, CastError("timeout", status=None, retryable=True))
    item, message = await process(worker, sqlite_store, clock)
    assert item.state == PENDING and message.parts_sent == 1
    clock.advance(item.due_at - clock())
    item, message = await process(worker, sqlite_store, clock)
    assert (message.stage, message.parts_sent) == ("poll", 2)
    assert cast.idempotency_keys() == ["ghl:m1:1/2", "ghl:m1:2/2", "ghl:m1:2/2"]


async def test_a_location_needing_reauthorization_fails_without_calling_cast(
    worker, sqlite_store, cast, clock
):
    repo = installations(sqlite_store)
    await install(repo, clock(), location_id=LOCATION, needs_reauth=True, reauth_reason="revoked")
    await accept(sqlite_store, clock)
    _, message = await process(worker, sqlite_store, clock)
    assert (message.status, message.error_code) == ("failed", "REAUTHORIZATION_NEEDED")
    assert cast.calls["send_sms"] == []


# Stage 2: delivery receipts ---------------------------------------------------------------------


async def sent(worker, store, clock) -> None:
    """m1 accepted by Cast and due for its first receipt poll."""
    await accept(store, clock)
    await process(worker, store, clock)
    clock.advance(15)


async def test_a_delivered_receipt_reports_the_message_delivered_confirmed(
    worker, sqlite_store, cast, ghl, clock
):
    await sent(worker, sqlite_store, clock)
    cast.script("message_status", StatusResult(status="delivered", dlr_status="DELIVRD"))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.delivery) == (DONE, "delivered", "confirmed")
    assert reported(ghl) == [("delivered", None)]


async def test_a_failed_receipt_fails_the_message_with_the_carrier_reason(
    worker, sqlite_store, cast, ghl, clock
):
    await sent(worker, sqlite_store, clock)
    cast.script("message_status", StatusResult(status="undelivered", dlr_status="UNDELIV"))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "UNDELIV")
    assert "could not deliver" in (message.error_message or "")
    assert reported(ghl) == [("failed", "UNDELIV")]


async def test_an_unknown_receipt_is_polled_again_at_growing_intervals(worker, sqlite_store, clock):
    await sent(worker, sqlite_store, clock)
    item, _ = await process(worker, sqlite_store, clock)
    assert (item.state, item.due_at) == (PENDING, clock() + 30)
    clock.advance(30)
    item, _ = await process(worker, sqlite_store, clock)
    assert item.due_at == clock() + 60


async def test_a_receipt_still_unknown_at_the_deadline_counts_as_delivered_unconfirmed(
    worker, sqlite_store, ghl, clock
):
    await sent(worker, sqlite_store, clock)
    clock.advance(1800)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.delivery) == (DONE, "delivered", "unconfirmed")
    assert reported(ghl) == [("delivered", None)]


async def test_an_error_of_the_status_endpoint_is_recorded_and_polled_again(
    worker, sqlite_store, cast, clock
):
    await sent(worker, sqlite_store, clock)
    cast.script("message_status", CAST_503)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.stage, events(message)[-1]) == (PENDING, "poll", "dlr_unknown")


# Stage 3: report to GHL -------------------------------------------------------------------------


async def test_a_ghl_error_on_the_report_is_retried_with_backoff_and_cast_is_not_asked_again(
    accepted_mode, sqlite_store, cast, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", GHL_503)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert item.state == PENDING and clock() + 1 <= item.due_at <= clock() + 2
    assert (message.stage, events(message)[-1]) == ("report", "report_retry")
    clock.advance(2)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported) == (DONE, True)
    assert len(cast.calls["send_sms"]) == 1


async def test_a_401_on_the_report_refreshes_the_token_once_and_reports_with_the_new_one(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", GHLError("401", status=401))
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported) == (DONE, True)
    assert ghl.tokens_used("update_message_status") == ["access-0", "access-1"]


async def test_a_permanent_ghl_error_on_the_report_is_given_up_at_once(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", GHLError("404", status=404))
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported, events(message)[-1]) == (DONE, False, "report_failed")


async def test_a_report_whose_token_refresh_ghl_refuses_with_a_422_is_given_up_at_once(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", GHLError("401", status=401))
    ghl.script("exchange_token", GHLError("422", status=422, body='{"message":"bad user_type"}'))
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported, events(message)[-1]) == (DONE, False, "report_failed")
    assert "422 bad user_type" in message.history[-1].detail


async def test_report_errors_past_the_status_deadline_are_given_up(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", GHL_503, GHL_503)
    await process(accepted_mode, sqlite_store, clock)
    clock.advance(900)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported, events(message)[-1]) == (DONE, False, "report_failed")


async def test_a_settings_page_test_sms_is_never_reported_to_ghl(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock, synthetic=True)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.status) == (DONE, "delivered")
    assert ghl.calls["update_message_status"] == []


# Unexpected errors and shutdown -----------------------------------------------------------------


async def test_an_unexpected_send_error_is_retried_within_the_send_deadline(
    worker, sqlite_store, cast, clock
):
    await accept(sqlite_store, clock)
    cast.script("send_sms", RuntimeError("a bug"))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, events(message)[-1]) == (PENDING, None, "unexpected_error")


async def test_an_unexpected_send_error_past_the_send_deadline_fails_as_an_internal_error(
    worker, sqlite_store, cast, ghl, clock
):
    await accept(sqlite_store, clock)
    clock.advance(600)
    cast.script("send_sms", RuntimeError("a bug"))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, item.due_at) == (PENDING, clock())  # reported next
    assert (message.status, message.error_code) == ("failed", "INTERNAL_ERROR")
    item, _ = await process(worker, sqlite_store, clock)
    assert item.state == DONE and reported(ghl) == [("failed", "INTERNAL_ERROR")]


async def test_a_message_cancelled_while_cast_answers_is_handed_back_due_at_once(
    worker, sqlite_store, cast, clock
):
    await accept(sqlite_store, clock)
    item = await cancel_in_flight(worker, sqlite_store, QUEUE, clock, cast, "send_sms")
    assert (item.state, item.due_at, item.lease) == (PENDING, clock(), None)


async def test_an_unexpected_poll_error_past_the_receipt_deadline_counts_as_delivered_unconfirmed(
    worker, sqlite_store, cast, ghl, clock
):
    await sent(worker, sqlite_store, clock)
    clock.advance(1800)
    cast.script("message_status", RuntimeError("a bug"))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.due_at, message.status, message.delivery) == (clock(), "delivered", "unconfirmed")
    item, _ = await process(worker, sqlite_store, clock)
    assert item.state == DONE and reported(ghl) == [("delivered", None)]


async def test_an_unexpected_report_error_is_retried_until_the_status_deadline(
    accepted_mode, sqlite_store, ghl, clock
):
    await accept(sqlite_store, clock)
    ghl.script("update_message_status", RuntimeError("a bug"), RuntimeError("a bug"))
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, events(message)[-1]) == (PENDING, "unexpected_error")
    clock.advance(900)
    item, message = await process(accepted_mode, sqlite_store, clock)
    assert (item.state, message.reported, events(message)[-1]) == (DONE, False, "report_failed")
