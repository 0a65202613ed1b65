"""Inbound SMS units: the gateway payload, de-duplication keys, routing, and the inbox/recipient
repositories on both store backends."""

import asyncio
import json

import pytest

from app.cast.senders import sender_key
from app.config import SettingsError, load_settings
from app.ghl.webhooks import parse_payload
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, NoRoute, Route
from app.inbound.schemas import InboundPayload, InboundSMS
from app.kit.errors import ApiError
from app.store import DONE, PENDING, Store
from tests.support.doubles import no_owners

NOW = 1_800_000_000.0
DAY = 86_400.0
PHONE = "+639171234567"
REQUIRED = {"GHL_CLIENT_ID": "id", "GHL_CLIENT_SECRET": "s", "CAST_API_KEY": "cast_" + "ab" * 32}


def payload(**fields: object) -> InboundPayload:
    body = {"from": "09171234567", "message": "Yes", "id": "gw-1", **fields}
    return parse_payload(InboundPayload, json.dumps(body).encode())


def settings(**overrides: object):
    return load_settings(**REQUIRED, _env_file=None, **overrides)


# The payload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["+639171234567", "639171234567", "09171234567", "9171234567"])
def test_the_sender_in_any_ph_format_becomes_e164(sender: str):
    assert payload(**{"from": sender}).sender == PHONE


def test_a_non_ph_sender_is_refused_naming_from():
    with pytest.raises(ApiError) as caught:
        payload(**{"from": "+14155550123"})
    assert (caught.value.status, caught.value.field) == (422, "from")
    assert "not a Philippine number" in caught.value.message


def test_the_text_is_kept_exactly_as_sent():
    assert payload(message="  Salamat po! 🙏\n").message == "  Salamat po! 🙏\n"


def test_received_at_without_an_offset_is_philippine_time():
    parsed = payload(received_at="2026-07-20T08:15:30").received_at
    assert parsed is not None and parsed.isoformat() == "2026-07-20T00:15:30+00:00"


def test_received_at_must_be_an_iso_string_not_a_number():
    with pytest.raises(ApiError) as caught:
        payload(received_at=1784500000)
    assert caught.value.field == "received_at"


def test_the_gateway_id_is_the_dedup_key_when_given():
    assert payload(id=" gw-7 ").dedup_key == "gw:gw-7"


def test_without_id_the_same_sender_text_and_instant_give_the_same_key():
    one = payload(id=None, received_at="2026-07-20T08:15:30+08:00")
    same = payload(id="", **{"from": "9171234567"}, received_at="2026-07-20T00:15:30Z")
    other_text = payload(id=None, message="No", received_at="2026-07-20T08:15:30+08:00")
    other_time = payload(id=None, received_at="2026-07-20T08:15:31+08:00")
    assert one.dedup_key == same.dedup_key
    assert len({one.dedup_key, other_text.dedup_key, other_time.dedup_key}) == 3


def test_unknown_fields_are_ignored():
    assert payload(carrier="Globe").message == "Yes"


# Settings ------------------------------------------------------------------------------------


def test_inbound_routes_are_read_from_json():
    parsed = settings(inbound_routes='{" CAST ": "loc-1", "09171234567": "loc-2"}')
    assert parsed.inbound_routes == {"CAST": "loc-1", "09171234567": "loc-2"}
    assert settings(inbound_routes="").inbound_routes == {}
    assert settings().inbound_routing_window_days == 30


@pytest.mark.parametrize("value", ["{not json", '["CAST"]', '{"CAST": ""}', '{"CAST": 5}'])
def test_malformed_inbound_routes_stop_the_start_naming_the_variable(value: str):
    with pytest.raises(SettingsError) as caught:
        settings(inbound_routes=value)
    assert caught.value.lines[0].startswith("INBOUND_ROUTES: ")


# Routing -------------------------------------------------------------------------------------


def test_route_keys_normalise_numbers_but_keep_names_exactly_as_cast_lists_them():
    assert sender_key("0917 123 4567") == sender_key("+639171234567") == PHONE
    assert sender_key(" Cast Ph ") == "Cast Ph"
    assert sender_key("ACME CO") != sender_key("AcmeCo")


def router(directory: RecipientDirectory, **overrides: object) -> InboundRouter:
    return InboundRouter(settings(**overrides), directory, no_owners)


def directory_for(store: Store, days: float = 30) -> RecipientDirectory:
    return RecipientDirectory(store, days * DAY)


def routed(route: Route | NoRoute) -> tuple[str, str]:
    assert isinstance(route, Route), route
    return route.location_id, route.routed_by


async def test_the_only_location_that_texted_the_number_gets_a_reply_without_to(store: Store):
    directory = directory_for(store)
    await directory.remember("09171234567", "loc-1", "ACME", NOW - DAY)

    route = await router(directory).route(PHONE, None, NOW)

    assert routed(route) == ("loc-1", "recent_outbound")


async def test_the_only_location_that_texted_from_to_gets_the_reply(store: Store):
    directory = directory_for(store)
    await directory.remember("09171234567", "loc-1", "ACME", NOW - DAY)

    route = await router(directory).route(PHONE, "ACME", NOW)

    assert routed(route) == ("loc-1", "recent_outbound")


async def test_an_inbound_route_for_to_wins_over_a_location_that_texted_from_elsewhere(
    store: Store,
):
    directory = directory_for(store)
    await directory.remember("09171234567", "loc-1", "ACME", NOW - DAY)

    route = await router(directory, inbound_routes='{"OTHER": "loc-mapped"}').route(
        PHONE, "OTHER", NOW
    )

    assert routed(route) == ("loc-mapped", "route")


async def test_a_location_that_texted_from_another_sender_never_gets_a_reply_to_to(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-a", "ACME", NOW - DAY)

    route = await router(directory).route(PHONE, "+639991234567", NOW)

    assert isinstance(route, NoRoute)
    assert "no location owns '+639991234567'" in route.reason


async def test_among_several_senders_the_reply_goes_to_the_one_whose_sender_id_it_answers(
    store: Store,
):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "ACME", NOW - 2 * DAY)
    await directory.remember(PHONE, "loc-2", "Beta Shop", NOW - DAY)

    assert routed(await router(directory).route(PHONE, "ACME", NOW)) == (
        "loc-1",
        "recent_outbound",
    )
    assert routed(await router(directory).route(PHONE, "Beta Shop", NOW)) == (
        "loc-2",
        "recent_outbound",
    )


async def test_a_sim_number_sender_matches_any_spelling_of_to(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "ACME", NOW)
    await directory.remember(PHONE, "loc-2", "09991234567", NOW)

    route = await router(directory).route(PHONE, "+63 999 123 4567", NOW)

    assert routed(route) == ("loc-2", "recent_outbound")


async def test_several_senders_and_no_to_is_held_naming_them(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "ACME", NOW - DAY)
    await directory.remember(PHONE, "loc-2", "BETA", NOW)

    route = await router(directory).route(PHONE, None, NOW)

    assert isinstance(route, NoRoute)
    assert route.reason.startswith("2 locations sent an SMS to this number in the last 30 days")
    assert "(loc-2, loc-1)" in route.reason and "its own sender ID" in route.reason


async def test_two_senders_with_the_same_sender_id_are_never_told_apart(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "SHARED", NOW - DAY)
    await directory.remember(PHONE, "loc-2", "SHARED", NOW)

    assert isinstance(await router(directory).route(PHONE, "SHARED", NOW), NoRoute)


async def test_a_sender_whose_sender_id_is_unknown_keeps_the_reply_ambiguous(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "ACME", NOW - DAY)
    await directory.remember(PHONE, "loc-2", None, NOW)  # Cast's default for its account

    assert isinstance(await router(directory).route(PHONE, "ACME", NOW), NoRoute)


async def test_an_inbound_route_singles_out_its_location_among_several_senders(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", None, NOW - DAY)
    await directory.remember(PHONE, "loc-2", "BETA", NOW)

    route = await router(directory, inbound_routes='{"09991234567": "loc-1"}').route(
        PHONE, "09991234567", NOW
    )

    assert routed(route) == ("loc-1", "route")


async def test_past_the_window_the_receiving_number_route_applies(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-stale", "ACME", NOW - 1.5 * DAY)

    route = await router(
        directory, inbound_routes='{"09991234567": "loc-mapped"}', inbound_routing_window_days=1
    ).route(PHONE, "+63 999 123 4567", NOW)

    assert routed(route) == ("loc-mapped", "route")


async def test_no_sender_and_no_route_is_unroutable(store: Store):
    no_route = router(directory_for(store), inbound_routes='{"CAST": "loc"}')

    other = await no_route.route(PHONE, "OTHER", NOW)
    absent = await no_route.route(PHONE, None, NOW)

    assert isinstance(other, NoRoute) and "no INBOUND_ROUTES entry maps it" in other.reason
    assert isinstance(absent, NoRoute) and "no 'to' was given" in absent.reason


# The recipient directory ---------------------------------------------------------------------


async def test_every_location_that_texted_a_number_is_remembered_with_its_sender(store: Store):
    directory = directory_for(store)
    await directory.remember("09171234567", "loc-1", "ACME", NOW - 10)
    await directory.remember("+639171234567", "loc-2", None, NOW)

    assert [(s.location_id, s.sender, s.at) for s in await directory.senders(PHONE, 0)] == [
        ("loc-2", None, NOW),
        ("loc-1", "ACME", NOW - 10),
    ]
    assert [s.location_id for s in await directory.senders(PHONE, NOW - 5)] == ["loc-2"]


async def test_an_older_send_never_replaces_a_locations_newer_one(store: Store):
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-1", "NEW", NOW)
    await directory.remember(PHONE, "loc-1", "OLD", NOW - 10)

    assert [(s.sender, s.at) for s in await directory.senders(PHONE, 0)] == [("NEW", NOW)]


async def test_concurrent_remembers_keep_every_location(store: Store):
    directory = directory_for(store)
    await asyncio.gather(
        *(directory.remember(PHONE, f"loc-{i}", f"S{i}", NOW + i) for i in range(10))
    )

    senders = await directory.senders(PHONE, 0)
    assert sorted(s.location_id for s in senders) == sorted(f"loc-{i}" for i in range(10))


async def test_senders_past_the_window_are_dropped_on_the_next_write(store: Store):
    directory = directory_for(store, days=1)
    await directory.remember(PHONE, "loc-old", "OLD", NOW - 2 * DAY)
    await directory.remember(PHONE, "loc-new", "NEW", NOW)

    doc = await store.get_doc("recipients", PHONE)
    assert doc is not None and [s["location_id"] for s in doc.data["senders"]] == ["loc-new"]


async def test_a_recipient_stored_by_an_earlier_version_reads_as_one_unknown_sender(store: Store):
    await store.put_doc("recipients", PHONE, {"location_id": "loc-1", "at": NOW})
    directory = directory_for(store)
    await directory.remember(PHONE, "loc-2", "BETA", NOW + 1)

    senders = await directory.senders(PHONE, 0)
    assert [(s.location_id, s.sender) for s in senders] == [("loc-2", "BETA"), ("loc-1", None)]
    assert isinstance(await router(directory).route(PHONE, "BETA", NOW + 2), NoRoute)


async def test_remembering_a_non_ph_number_is_a_no_op(store: Store):
    await directory_for(store).remember("+14155550123", "loc", "ACME", NOW)
    assert await store.list_docs("recipients") == []


# The inbox -----------------------------------------------------------------------------------


def record(key: str = "gw-1") -> InboundSMS:
    return InboundSMS.from_payload(payload(id=key), NOW)


async def finish_as(inbox: InboxRepository, message: InboundSMS, status: str) -> None:
    (item,) = await inbox.claim(now=NOW + 1, lease_seconds=30, limit=1)
    message.finish(NOW + 1, status)  # type: ignore[arg-type]
    assert await inbox.finish(item, message, NOW + 1)


async def test_a_message_is_accepted_once_per_key(store: Store):
    inbox = InboxRepository(store)
    assert await inbox.add(record())
    assert not await inbox.add(record())
    assert await inbox.counts() == {PENDING: 1, DONE: 0}


async def test_an_unroutable_message_is_listed_until_re_routed(store: Store):
    inbox = InboxRepository(store)
    message = record()
    await inbox.add(message)
    await finish_as(inbox, message, "unroutable")
    assert [m.id for m in await inbox.list_unroutable()] == ["gw:gw-1"]

    assert await inbox.reroute("gw:gw-1", "loc-9", NOW + 5)

    assert await inbox.list_unroutable() == []
    item = await store.get_item("inbound", "gw:gw-1")
    assert item is not None and item.state == PENDING and item.due_at == NOW + 5
    again = InboundSMS.model_validate(item.data)
    assert (again.location_id, again.routed_by, again.status) == ("loc-9", "manual", "pending")
    assert again.history[-1].event == "routed"


async def test_a_failed_message_can_be_re_routed_too(store: Store):
    inbox = InboxRepository(store)
    message = record()
    await inbox.add(message)
    await finish_as(inbox, message, "failed")

    assert await inbox.reroute("gw:gw-1", "loc-9", NOW + 5)


async def test_delivered_pending_or_unknown_messages_are_not_re_routed(store: Store):
    inbox = InboxRepository(store)
    delivered, pending = record("gw-d"), record("gw-p")
    await inbox.add(delivered)
    await finish_as(inbox, delivered, "delivered")
    await inbox.add(pending)

    assert not await inbox.reroute("gw:gw-d", "loc", NOW)
    assert not await inbox.reroute("gw:gw-p", "loc", NOW)
    assert not await inbox.reroute("gw:nope", "loc", NOW)
