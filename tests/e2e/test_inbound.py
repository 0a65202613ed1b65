"""Inbound SMS end to end: the test acts as Cast's SIM gateway, posting replies to the bridge,
which routes them to a location and adds them to the contact's conversation at the fake GHL."""

import asyncio
import json
import signal
import time
from typing import Any

import httpx
import pytest

from app.devkit.harness import LOCATION, Harness, webhook
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.schemas import InboundSMS
from app.optouts.repository import OptOutList
from app.store import Store
from tests.support import ON_BOTH_STORES

INBOUND_KEY = "inbound-test-key-5f1c2a9e"
ADMIN_KEY = "admin-test-key-7d3e9b1c4a"
DAY = 86_400.0
OTHER_LOCATION = "loc-2"
SENDER = "09171234567"
SENDER_E164 = "+639171234567"


def sms(
    gateway_id: str | None = "gw-1",
    message: str = "YES, see you at 3",
    sender: str = SENDER,
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"from": sender, "message": message, "to": "CASTTEST", **extra}
    if gateway_id is not None:
        payload["id"] = gateway_id
    return payload


async def post_sms(
    h: Harness, payload: dict[str, Any] | bytes, key: str | None = INBOUND_KEY
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.post("/webhooks/cast/inbound", content=body, headers=headers)


async def stored(h: Harness, inbound_id: str) -> InboundSMS | None:
    return await h.with_store(lambda store: InboxRepository(store).get(inbound_id))


async def inbound_counts(h: Harness) -> dict[str, int]:
    return await h.with_store(lambda store: InboxRepository(store).counts())


async def wait_record(h: Harness, inbound_id: str, status: str, timeout: float = 15) -> InboundSMS:
    async def poll(store: Store) -> InboundSMS:
        repo = InboxRepository(store)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await repo.get(inbound_id)
            if found is not None and found.status == status:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{inbound_id} never became {status}: {found}\n{h.logs()[-2000:]}")

    return await h.with_store(poll)


async def text_from(h: Harness, location: str, message_id: str) -> None:
    """Location `location` sends an SMS to SENDER; returns once Cast accepted it."""
    response = await h.post(webhook(message_id, locationId=location))
    assert response.status_code == 202

    async def poll(store: Store) -> None:
        directory = RecipientDirectory(store, DAY)
        for _ in range(300):
            if location in [s.location_id for s in await directory.senders(SENDER_E164, 0)]:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{location} never became a recent sender\n{h.logs()[-2000:]}")

    await h.with_store(poll)


async def set_sender_id(h: Harness, location: str, sender_id: str) -> None:
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        response = await client.put(
            f"/api/admin/locations/{location}/sender-id",
            json={"sender_id": sender_id},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    assert response.status_code == 200, response.text


def added(h: Harness) -> list[dict[str, Any]]:
    return [entry["body"] for entry in h.ghl.inbound]


@pytest.fixture
def gateway(harness: Harness) -> Harness:
    """A bridge (not yet started) that accepts the gateway's key."""
    harness.env["INBOUND_API_KEY"] = INBOUND_KEY
    return harness


@pytest.fixture
async def inbound_bridge(gateway: Harness) -> Harness:
    """Installed location, routes for CASTTEST to it, running bridge."""
    gateway.env["INBOUND_ROUTES"] = json.dumps({"CASTTEST": LOCATION})
    await gateway.seed_installation()
    gateway.start()
    return gateway


# Routing ------------------------------------------------------------------------------------


@ON_BOTH_STORES
async def test_a_reply_lands_in_the_location_whose_sender_id_it_was_sent_to(gateway: Harness):
    gateway.env["ADMIN_API_KEY"] = ADMIN_KEY
    await gateway.seed_installation(LOCATION)
    token_2 = await gateway.seed_installation(OTHER_LOCATION)
    gateway.start()
    await set_sender_id(gateway, OTHER_LOCATION, "LOC2SHOP")
    await text_from(gateway, OTHER_LOCATION, "m-second")
    await text_from(gateway, LOCATION, "m-first")  # the latest sender, from CASTTEST

    response = await post_sms(gateway, sms("gw-thread", to="LOC2SHOP"))

    assert response.status_code == 202
    assert response.json() == {"status": "queued", "id": "gw:gw-thread"}
    record = await wait_record(gateway, "gw:gw-thread", "delivered")
    (entry,) = gateway.ghl.inbound
    assert entry["token"] == token_2
    assert entry["body"]["type"] == "SMS" and entry["body"]["direction"] == "inbound"
    assert entry["body"]["message"] == "YES, see you at 3"
    assert entry["body"]["altId"] == "gw:gw-thread"
    assert gateway.ghl.contacts[(OTHER_LOCATION, SENDER_E164)]["id"] == entry["body"]["contactId"]
    assert (record.location_id, record.routed_by) == (OTHER_LOCATION, "sender_id")
    assert record.ghl_message_id and record.conversation_id and record.attempts == 1
    assert [event.event for event in record.history] == [
        "received",
        "routed",
        "contact",
        "ghl_accepted",
        "delivered",
    ]


async def test_a_stop_to_a_locations_own_number_goes_there_though_another_texted_the_customer(
    gateway: Harness,
):
    gateway.env["ADMIN_API_KEY"] = ADMIN_KEY
    await gateway.seed_installation(LOCATION)
    token_2 = await gateway.seed_installation(OTHER_LOCATION)
    gateway.start()
    await set_sender_id(gateway, OTHER_LOCATION, "+639170000002")  # its own SIM, assigned
    await text_from(gateway, LOCATION, "m-other-agency")  # another agency texts its customer

    await post_sms(gateway, sms("gw-stop", message="STOP", to="0917 000 0002"))

    record = await wait_record(gateway, "gw:gw-stop", "delivered")
    assert (record.location_id, record.routed_by) == (OTHER_LOCATION, "sender_id")
    assert [entry["token"] for entry in gateway.ghl.inbound] == [token_2]
    lists = await gateway.with_store(
        lambda store: asyncio.gather(
            OptOutList(store).get(OTHER_LOCATION, SENDER_E164),
            OptOutList(store).get(LOCATION, SENDER_E164),
        )
    )
    assert lists[0] is not None and lists[1] is None


async def test_a_reply_two_locations_may_be_owed_is_held_never_given_to_the_last_sender(
    gateway: Harness,
):
    await gateway.seed_installation(LOCATION)
    await gateway.seed_installation(OTHER_LOCATION)
    gateway.start()
    await text_from(gateway, LOCATION, "m-first")
    await text_from(gateway, OTHER_LOCATION, "m-second")  # same sender ID, CASTTEST

    await post_sms(gateway, sms("gw-shared"))

    record = await wait_record(gateway, "gw:gw-shared", "unroutable")
    assert record.location_id is None and record.error_code == "UNROUTABLE"
    assert f"({OTHER_LOCATION}, {LOCATION})" in (record.error_message or "")
    kept = await gateway.with_store(lambda store: InboxRepository(store).list_unroutable())
    assert [message.id for message in kept] == ["gw:gw-shared"]
    assert gateway.ghl.inbound_requests == []


async def test_without_a_recent_sender_the_receiving_number_route_decides(gateway: Harness):
    gateway.env["INBOUND_ROUTES"] = json.dumps({"CASTTEST": OTHER_LOCATION})
    token_2 = await gateway.seed_installation(OTHER_LOCATION)
    gateway.start()

    await post_sms(gateway, sms("gw-route", to="CASTTEST"))

    record = await wait_record(gateway, "gw:gw-route", "delivered")
    assert (record.location_id, record.routed_by) == (OTHER_LOCATION, "route")
    assert gateway.ghl.inbound[0]["token"] == token_2


async def test_a_sender_older_than_the_window_no_longer_routes_the_reply(gateway: Harness):
    gateway.env["INBOUND_ROUTING_WINDOW_DAYS"] = "0.00001"  # 0.864 s
    gateway.env["INBOUND_ROUTES"] = json.dumps({"CASTTEST": LOCATION})
    await gateway.seed_installation(LOCATION)
    await gateway.seed_installation(OTHER_LOCATION)
    gateway.start()
    await text_from(gateway, OTHER_LOCATION, "m-old")
    await asyncio.sleep(1.0)

    await post_sms(gateway, sms("gw-stale"))

    record = await wait_record(gateway, "gw:gw-stale", "delivered")
    assert (record.location_id, record.routed_by) == (LOCATION, "route")


async def test_an_unroutable_reply_is_kept_counted_and_never_guessed(gateway: Harness):
    await gateway.seed_installation(LOCATION)
    gateway.start()

    response = await post_sms(gateway, sms("gw-lost", to="UNKNOWNID"))

    assert response.status_code == 202
    record = await wait_record(gateway, "gw:gw-lost", "unroutable")
    assert record.location_id is None and record.error_code == "UNROUTABLE"
    assert "'UNKNOWNID'" in (record.error_message or "")
    kept = await gateway.with_store(lambda store: InboxRepository(store).list_unroutable())
    assert [message.id for message in kept] == ["gw:gw-lost"]
    assert gateway.ghl.inbound_requests == [] and gateway.ghl.contact_upserts == []
    assert "inbound SMS is unroutable" in gateway.logs()
    assert gateway.stop() == 0
    assert '"inbound_unroutable": 1' in gateway.logs()


async def test_an_unroutable_reply_is_delivered_once_re_routed(gateway: Harness):
    token = await gateway.seed_installation(LOCATION)
    gateway.start()
    await post_sms(gateway, sms("gw-later", to=None))
    await wait_record(gateway, "gw:gw-later", "unroutable")

    rerouted = await gateway.with_store(
        lambda store: InboxRepository(store).reroute("gw:gw-later", LOCATION, time.time())
    )

    assert rerouted
    record = await wait_record(gateway, "gw:gw-later", "delivered")
    assert record.routed_by == "manual" and gateway.ghl.inbound[0]["token"] == token
    assert await gateway.with_store(lambda store: InboxRepository(store).list_unroutable()) == []


# Contact ------------------------------------------------------------------------------------


async def test_a_reply_from_a_known_contact_goes_to_that_contact(inbound_bridge: Harness):
    inbound_bridge.ghl.contacts[(LOCATION, SENDER_E164)] = {"id": "contact-known"}

    await post_sms(inbound_bridge, sms("gw-known", sender="+63 917 123 4567"))

    record = await wait_record(inbound_bridge, "gw:gw-known", "delivered")
    assert added(inbound_bridge)[0]["contactId"] == "contact-known"
    assert inbound_bridge.ghl.contact_upserts == []
    assert record.contact_id == "contact-known" and not record.contact_created


async def test_a_reply_from_an_unknown_number_creates_the_contact(inbound_bridge: Harness):
    await post_sms(inbound_bridge, sms("gw-new", sender="639171234567"))

    record = await wait_record(inbound_bridge, "gw:gw-new", "delivered")
    assert inbound_bridge.ghl.contact_upserts == [{"locationId": LOCATION, "phone": SENDER_E164}]
    created = inbound_bridge.ghl.contacts[(LOCATION, SENDER_E164)]
    assert added(inbound_bridge)[0]["contactId"] == created["id"] == record.contact_id
    assert record.contact_created


# Authentication and validation --------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong-key", INBOUND_KEY + "x"])
async def test_a_missing_or_wrong_api_key_is_refused_and_nothing_stored(
    inbound_bridge: Harness, key: str | None
):
    response = await post_sms(inbound_bridge, sms("gw-auth"), key=key)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert await stored(inbound_bridge, "gw:gw-auth") is None


async def test_without_inbound_api_key_the_endpoint_answers_503(harness: Harness):
    await harness.seed_installation()
    harness.start()

    response = await post_sms(harness, sms("gw-off"))

    assert response.status_code == 503
    assert "INBOUND_API_KEY" in response.json()["error"]["message"]
    assert await stored(harness, "gw:gw-off") is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"from": "09171234567", ', 400, None),
        (b'["09171234567", "hi"]', 400, None),
        ({"message": "hi", "id": "x"}, 422, "from"),
        ({"from": "12345", "message": "hi", "id": "x"}, 422, "from"),
        ({"from": "+14155550123", "message": "hi", "id": "x"}, 422, "from"),
        ({"from": "(02) 8555 1234", "message": "hi", "id": "x"}, 422, "from"),
        ({"from": SENDER, "id": "x"}, 422, "message"),
        ({"from": SENDER, "message": "  ", "id": "x"}, 422, "message"),
        ({"from": SENDER, "message": 42, "id": "x"}, 422, "message"),
        (
            {"from": SENDER, "message": "hi", "id": "x", "received_at": "yesterday"},
            422,
            "received_at",
        ),
        ({"from": SENDER, "message": "hi"}, 422, "id"),
    ],
)
async def test_a_malformed_payload_is_refused_naming_the_field(
    inbound_bridge: Harness, body: dict[str, Any] | bytes, status: int, field: str | None
):
    response = await post_sms(inbound_bridge, body)

    assert response.status_code == status
    error = response.json()["error"]
    assert error.get("field") == field
    assert sum((await inbound_counts(inbound_bridge)).values()) == 0
    assert inbound_bridge.ghl.inbound_requests == []


# Exactly once -------------------------------------------------------------------------------


async def test_a_gateway_retry_with_the_same_id_is_added_once(inbound_bridge: Harness):
    first = await post_sms(inbound_bridge, sms("gw-retry"))
    await wait_record(inbound_bridge, "gw:gw-retry", "delivered")
    second = await post_sms(inbound_bridge, sms("gw-retry"))

    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"status": "duplicate", "id": "gw:gw-retry"}
    await asyncio.sleep(0.3)
    assert len(inbound_bridge.ghl.inbound_requests) == 1


async def test_a_retry_without_id_is_recognised_by_sender_text_and_time(inbound_bridge: Harness):
    at = "2026-07-20T08:15:30+08:00"
    first = await post_sms(inbound_bridge, sms(None, received_at=at))
    again = await post_sms(inbound_bridge, sms(None, sender="+639171234567", received_at=at))
    later = await post_sms(inbound_bridge, sms(None, received_at="2026-07-20T08:16:00+08:00"))

    assert [r.status_code for r in (first, again, later)] == [202, 200, 202]
    assert again.json()["id"] == first.json()["id"] != later.json()["id"]
    await inbound_bridge.wait_for(lambda: len(inbound_bridge.ghl.inbound) == 2, what="two adds")
    assert [body["date"] for body in added(inbound_bridge)].count("2026-07-20T00:15:30+00:00") == 1


async def test_concurrent_copies_of_one_sms_are_added_once(inbound_bridge: Harness):
    responses = await asyncio.gather(*(post_sms(inbound_bridge, sms("gw-race")) for _ in range(10)))

    assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
    await wait_record(inbound_bridge, "gw:gw-race", "delivered")
    await asyncio.sleep(0.3)
    assert len(inbound_bridge.ghl.inbound_requests) == 1
    assert len(inbound_bridge.ghl.contact_upserts) == 1


async def test_a_ghl_429_is_waited_out_then_the_reply_is_added_once(inbound_bridge: Harness):
    inbound_bridge.ghl.inbound_script.append(429)

    await post_sms(inbound_bridge, sms("gw-429"))

    record = await wait_record(inbound_bridge, "gw:gw-429", "delivered")
    assert len(inbound_bridge.ghl.inbound_requests) == 2 and len(inbound_bridge.ghl.inbound) == 1
    assert record.attempts == 1  # waited out in the GHL client (the interval GHL named)


async def test_a_ghl_401_refreshes_the_token_once_and_retries(inbound_bridge: Harness):
    for token in list(inbound_bridge.ghl.valid_tokens):
        inbound_bridge.ghl.revoke(token)

    await post_sms(inbound_bridge, sms("gw-401"))

    record = await wait_record(inbound_bridge, "gw:gw-401", "delivered")
    assert len(inbound_bridge.ghl.refresh_calls()) == 1 and record.token_refreshed


async def test_a_ghl_400_fails_the_reply_and_keeps_it_with_the_reason(inbound_bridge: Harness):
    inbound_bridge.ghl.inbound_script.append(400)

    await post_sms(inbound_bridge, sms("gw-400"))

    record = await wait_record(inbound_bridge, "gw:gw-400", "failed")
    assert record.error_code == "GHL_400" and "scripted" in (record.error_message or "")
    assert len(inbound_bridge.ghl.inbound_requests) == 1


@pytest.mark.process  # SIGKILL
async def test_killed_after_the_ack_and_restarted_the_reply_is_added_exactly_once(
    gateway: Harness,
):
    # GHL stalls past the client timeout, so the bridge dies mid-delivery after the ack.
    gateway.env["INBOUND_ROUTES"] = json.dumps({"CASTTEST": LOCATION})
    gateway.env["LEASE_SECONDS"] = "3"
    gateway.ghl.inbound_stalls.append(30)
    await gateway.seed_installation()
    gateway.start()
    response = await post_sms(gateway, sms("gw-crash"))
    assert response.status_code == 202
    await gateway.wait_for(lambda: gateway.ghl.inbound_requests, what="first add attempt")
    gateway.stop(signal.SIGKILL)
    assert gateway.ghl.inbound == []

    gateway.start()
    record = await wait_record(gateway, "gw:gw-crash", "delivered", timeout=20)
    await asyncio.sleep(0.3)
    assert len(gateway.ghl.inbound) == 1 and record.ghl_message_id


async def test_logs_mask_the_sender_and_never_show_the_key(inbound_bridge: Harness):
    await post_sms(inbound_bridge, sms("gw-logs"))
    await post_sms(inbound_bridge, sms("gw-logs-bad"), key="wrong-key")
    await wait_record(inbound_bridge, "gw:gw-logs", "delivered")

    logs = inbound_bridge.logs()
    assert INBOUND_KEY not in logs and "wrong-key" not in logs
    assert "9171234567" not in logs and "*4567" in logs
