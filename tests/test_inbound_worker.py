"""The inbound worker's state machine: route -> contact -> add to the GHL conversation, with its
retry, deadline, token-refresh and unroutable branches. A real SQLite store, fake GHL, fake
clock; each step is one claim of the message, as the worker's loop makes it."""

import pytest

from app.ghl.client import GHLError
from app.ghl.conversations import ConversationDirectory
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, routing_window
from app.inbound.schemas import InboundSMS
from app.inbound.worker import GHL_BACKOFF_BASE, InboundWorker
from app.metrics import Counters
from app.oauth.tokens import TokenService
from app.store import DONE, PENDING, Store, WorkItem
from tests.support.doubles import no_owners
from tests.support.units import (
    FakeClock,
    cancel_in_flight,
    install,
    installations,
    optout_service,
    step,
    unit_settings,
)

QUEUE = "inbound"
LOCATION = "loc-1"
PHONE = "+639171234567"
SETTINGS = unit_settings(inbound_deadline_seconds=3600)


@pytest.fixture
def recipients(sqlite_store: Store) -> RecipientDirectory:
    return RecipientDirectory(sqlite_store, routing_window(SETTINGS))


@pytest.fixture
def worker(sqlite_store: Store, recipients, ghl, clock) -> InboundWorker:
    tokens = TokenService(
        SETTINGS, sqlite_store, installations(sqlite_store), ghl, Counters(), clock=clock
    )
    router = InboundRouter(SETTINGS, recipients, no_owners)
    inbox, optouts = InboxRepository(sqlite_store), optout_service(SETTINGS, sqlite_store)
    return InboundWorker(
        SETTINGS,
        inbox,
        router,
        ghl,
        tokens,
        Counters(),
        clock,
        optouts=optouts,
        conversations=ConversationDirectory(ghl),
    )


@pytest.fixture
async def reply(sqlite_store: Store, recipients, clock) -> InboundSMS:
    """A received SMS from a number LOCATION texted an hour ago; LOCATION is installed."""
    await install(installations(sqlite_store), clock(), location_id=LOCATION)
    await recipients.remember(PHONE, LOCATION, "ACME", clock() - 3600)
    return await receive(sqlite_store, clock)


async def receive(store: Store, clock: FakeClock, **fields: object) -> InboundSMS:
    given = {"id": "gw:1", "phone": PHONE, "text": "hello", **fields}
    message = InboundSMS(accepted_at=clock(), started_at=clock(), **given)
    assert await InboxRepository(store).add(message)
    return message


async def process(worker, store, clock) -> tuple[WorkItem, InboundSMS]:
    item = await step(worker, store, QUEUE, clock)
    return item, InboundSMS.model_validate(item.data)


def events(message: InboundSMS) -> list[str]:
    return [event.event for event in message.history]


async def test_a_reply_to_the_one_location_that_texted_the_number_lands_in_its_conversation(
    worker, sqlite_store, ghl, clock, reply
):
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status) == (DONE, "delivered")
    assert (message.location_id, message.routed_by) == (LOCATION, "recent_outbound")
    assert (message.contact_id, message.contact_created) == ("contact-1", True)
    assert (message.conversation_id, message.ghl_message_id) == ("conv-1", "ghl-msg-1")
    ((token, added),) = ghl.calls["add_inbound_message"]
    assert (token, added.message, added.contact_id, added.alt_id) == (
        "access-0",
        "hello",
        "contact-1",
        "gw:1",
    )


async def test_an_existing_contact_is_used_not_created(worker, sqlite_store, ghl, clock, reply):
    ghl.script("find_contact_by_phone", {"id": "known"})
    _, message = await process(worker, sqlite_store, clock)
    assert (message.contact_id, message.contact_created) == ("known", False)
    assert ghl.calls["upsert_contact"] == []


async def test_a_message_no_location_can_be_chosen_for_is_kept_as_unroutable(
    worker, sqlite_store, ghl, clock
):
    await receive(sqlite_store, clock)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "unroutable", "UNROUTABLE")
    assert [m.id for m in await InboxRepository(sqlite_store).list_unroutable()] == ["gw:1"]
    assert not ghl.calls


async def test_a_ghl_server_error_is_retried_with_backoff_without_a_second_contact_lookup(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", GHLError("GHL answered 503", status=503))
    item, message = await process(worker, sqlite_store, clock)
    assert item.state == PENDING and clock() + 1 <= item.due_at <= clock() + 2
    assert events(message)[-1] == "ghl_retry" and message.attempts == 1
    clock.advance(2)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.attempts) == (DONE, "delivered", 2)
    assert len(ghl.calls["find_contact_by_phone"]) == 1


async def test_ghl_errors_past_the_inbound_deadline_fail_the_message(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", *[GHLError("GHL answered 503", status=503)] * 2)
    await process(worker, sqlite_store, clock)
    clock.advance(SETTINGS.inbound_deadline_seconds)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "GHL_503")
    assert (message.error_message or "").startswith("Gave up after 3600s")


async def test_a_ghl_403_fails_the_message_at_once(worker, sqlite_store, ghl, clock, reply):
    ghl.script("add_inbound_message", GHLError("GHL answered 403", status=403))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "GHL_403")


async def test_a_401_refreshes_the_token_once_and_adds_the_message_with_the_new_one(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", GHLError("GHL answered 401", status=401))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status) == (DONE, "delivered")
    assert ghl.tokens_used("add_inbound_message") == ["access-0", "access-1"]
    assert "token_refresh" in events(message)


async def test_a_401_after_the_refresh_is_retried_later_not_refreshed_again(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", *[GHLError("GHL answered 401", status=401)] * 2)
    item, message = await process(worker, sqlite_store, clock)
    assert item.state == PENDING and message.token_refreshed
    assert len(ghl.calls["exchange_token"]) == 1


async def test_a_location_that_is_not_installed_fails_the_message_without_retrying(
    worker, sqlite_store, ghl, recipients, clock
):
    await recipients.remember(PHONE, LOCATION, "ACME", clock() - 60)
    await receive(sqlite_store, clock)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "NOT_INSTALLED")
    assert ghl.calls["add_inbound_message"] == []


async def test_a_message_already_in_ghl_is_not_added_again(worker, sqlite_store, ghl, clock):
    await install(installations(sqlite_store), clock(), location_id=LOCATION)
    await receive(sqlite_store, clock, location_id=LOCATION, in_ghl=True, contact_id="c")
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status) == (DONE, "delivered")
    assert not ghl.calls


async def test_an_unexpected_error_reschedules_the_message_after_the_ghl_backoff(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", RuntimeError("a bug"))
    item, message = await process(worker, sqlite_store, clock)
    first_backoff = GHL_BACKOFF_BASE * 0.5, GHL_BACKOFF_BASE  # the first attempt's, jittered
    assert item.state == PENDING and message.history[-1].event == "unexpected_error"
    assert first_backoff[0] <= item.due_at - clock() <= first_backoff[1]


async def test_an_unexpected_error_past_the_deadline_fails_the_message_instead_of_pending(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", RuntimeError("a bug"), RuntimeError("a bug"))
    await process(worker, sqlite_store, clock)  # routed now: its deadline counts from here
    clock.advance(SETTINGS.inbound_deadline_seconds)
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "INTERNAL_ERROR")
    assert "Gave up after 3600s" in (message.error_message or "")


async def test_a_message_cancelled_in_flight_is_handed_back_due_at_once(
    worker, sqlite_store, ghl, clock, reply
):
    item = await cancel_in_flight(worker, sqlite_store, QUEUE, clock, ghl, "add_inbound_message")
    assert (item.state, item.due_at, item.lease) == (PENDING, clock(), None)


# The contact's conversation (issue 27) ------------------------------------------------------
async def test_the_reply_names_the_conversation_the_contact_already_has(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("search_conversations", [{"id": "conv-9", "contactId": "contact-1"}])
    _, message = await process(worker, sqlite_store, clock)
    ((_, added),) = ghl.calls["add_inbound_message"]
    assert added.conversation_id == message.conversation_id == "conv-9"
    assert ghl.calls["create_conversation"] == []


async def test_a_second_reply_of_the_contact_costs_no_conversation_look_up(
    worker, sqlite_store, ghl, clock, reply
):
    await process(worker, sqlite_store, clock)
    await receive(sqlite_store, clock, id="gw:2", contact_id="contact-1")
    _, second = await process(worker, sqlite_store, clock)
    assert second.status == "delivered"
    assert len(ghl.calls["search_conversations"]) == len(ghl.calls["create_conversation"]) == 1
    assert [m.conversation_id for _, m in ghl.calls["add_inbound_message"]] == ["conv-1"] * 2


async def test_a_cached_conversation_ghl_refuses_is_looked_up_again_and_the_reply_added(
    worker, sqlite_store, ghl, clock, reply
):
    await process(worker, sqlite_store, clock)
    ghl.script("add_inbound_message", GHLError("GHL answered 404", status=404))
    ghl.script("search_conversations", [{"id": "conv-new", "contactId": "contact-1"}])
    await receive(sqlite_store, clock, id="gw:2", contact_id="contact-1")
    _, second = await process(worker, sqlite_store, clock)
    assert (second.status, second.conversation_id) == ("delivered", "conv-new")
    assert len(ghl.calls["search_conversations"]) == 2


async def test_a_fresh_conversation_ghl_refuses_fails_the_reply_without_a_loop(
    worker, sqlite_store, ghl, clock, reply
):
    ghl.script("add_inbound_message", GHLError("GHL answered 400", status=400))
    item, message = await process(worker, sqlite_store, clock)
    assert (item.state, message.status, message.error_code) == (DONE, "failed", "GHL_400")
    assert len(ghl.calls["add_inbound_message"]) == 1
