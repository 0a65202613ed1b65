"""Inbound SMS units: the gateway payload, de-duplication keys, routing, and the inbox/recipient
repositories on both store backends."""

import asyncio
import json

import pytest

from app.config import SettingsError, load_settings
from app.errors import ApiError
from app.ghl.webhooks import parse_payload
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, route_key
from app.inbound.schemas import InboundPayload, InboundSMS
from app.store import DONE, PENDING, Store

NOW = 1_800_000_000.0
DAY = 86_400.0
PHONE = "+639171234567"
REQUIRED = {"GHL_CLIENT_ID": "id", "GHL_CLIENT_SECRET": "s", "CAST_API_KEY": "cast_abc"}


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


def test_route_keys_normalise_numbers_and_sender_ids():
    assert route_key("0917 123 4567") == route_key("+639171234567") == PHONE
    assert route_key(" Cast Ph ") == "CASTPH"


async def test_the_most_recent_sender_within_the_window_wins(store: Store):
    directory = RecipientDirectory(store)
    router = InboundRouter(settings(inbound_routes='{"CAST": "loc-mapped"}'), directory)
    await directory.remember("09171234567", "loc-old", NOW - 2 * DAY)
    await directory.remember("+639171234567", "loc-new", NOW - DAY)

    route = await router.route(PHONE, "CAST", NOW)

    assert route is not None and (route.location_id, route.routed_by) == (
        "loc-new",
        "recent_outbound",
    )


async def test_past_the_window_the_receiving_number_route_applies(store: Store):
    directory = RecipientDirectory(store)
    router = InboundRouter(
        settings(inbound_routes='{"09991234567": "loc-mapped"}', inbound_routing_window_days=1),
        directory,
    )
    await directory.remember(PHONE, "loc-stale", NOW - 1.5 * DAY)

    route = await router.route(PHONE, "+63 999 123 4567", NOW)

    assert route is not None and (route.location_id, route.routed_by) == ("loc-mapped", "route")


async def test_no_sender_and_no_route_is_unroutable(store: Store):
    router = InboundRouter(settings(inbound_routes='{"CAST": "loc"}'), RecipientDirectory(store))

    assert await router.route(PHONE, "OTHER", NOW) is None
    assert await router.route(PHONE, None, NOW) is None


async def test_an_older_send_never_replaces_a_newer_last_sender(store: Store):
    directory = RecipientDirectory(store)
    await directory.remember(PHONE, "loc-new", NOW)
    await directory.remember(PHONE, "loc-old", NOW - 10)

    last = await directory.last_sender(PHONE)
    assert last is not None and last.location_id == "loc-new"


async def test_concurrent_remembers_keep_the_latest(store: Store):
    directory = RecipientDirectory(store)
    await asyncio.gather(*(directory.remember(PHONE, f"loc-{i}", NOW + i) for i in range(10)))

    last = await directory.last_sender(PHONE)
    assert last is not None and (last.location_id, last.at) == ("loc-9", NOW + 9)


async def test_remembering_a_non_ph_number_is_a_no_op(store: Store):
    await RecipientDirectory(store).remember("+14155550123", "loc", NOW)
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
