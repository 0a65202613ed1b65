"""The admin API on the running bridge: its own bearer key, and each operator action."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.cast.keys import key_label
from app.cast.pacing import CastPacer
from app.devkit.harness import LOCATION, Harness, webhook
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from app.store import Store

ADMIN_KEY = "admin-test-key-0c5e7a91b2"
INBOUND_KEY = "inbound-test-key-5f1c2a9e"

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/admin/installations", None),
    ("GET", "/api/admin/cast-rates", None),
    ("GET", "/api/admin/messages", None),
    ("GET", "/api/admin/locations", None),
    ("GET", "/api/admin/messages/m-1", None),
    ("POST", "/api/admin/messages/m-1/requeue", None),
    ("GET", "/api/admin/inbound/unroutable", None),
    ("POST", "/api/admin/inbound/gw:x/reroute", {"location_id": LOCATION}),
    ("POST", "/api/admin/inbound/gw:x/discard", None),
    ("PUT", f"/api/admin/locations/{LOCATION}/sender-id", {"sender_id": "ACME"}),
    ("DELETE", f"/api/admin/locations/{LOCATION}/sender-ids/ACME", None),
    ("GET", f"/api/admin/locations/{LOCATION}/optouts", None),
    ("POST", f"/api/admin/locations/{LOCATION}/optouts/09171234567/lift", {"reason": "asked"}),
]


async def call(
    h: Harness,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    key: str | None = ADMIN_KEY,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.request(method, path, json=body, headers=headers)


async def reply(h: Harness, gateway_id: str, sender: str) -> None:
    payload = {"from": sender, "message": f"reply {gateway_id}", "to": "CASTTEST", "id": gateway_id}
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        response = await client.post(
            "/webhooks/cast/inbound", json=payload, headers={"X-API-Key": INBOUND_KEY}
        )
    assert response.status_code == 202


async def seed_optouts(store: Store, *phones: str) -> None:
    for phone in phones:
        optout = OptOut(
            location_id=LOCATION, phone=phone, source="keyword", at=1.8e9, recorded_at=1.8e9
        )
        assert await OptOutList(store).add(optout)


async def wait_message(h: Harness, message_id: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        response = await call(h, "GET", f"/api/admin/messages/{message_id}")
        if response.status_code == 200 and response.json()["state"] == "done":
            assert response.json()["status"] == status, response.json()
            return response.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{message_id} did not finish: {h.logs()[-2000:]}")


@pytest.fixture
async def admin(harness: Harness) -> AsyncIterator[Harness]:
    harness.env.update(ADMIN_API_KEY=ADMIN_KEY, INBOUND_API_KEY=INBOUND_KEY)
    await harness.seed_installation()
    harness.start()
    yield harness


async def test_admin_routes_refuse_a_missing_or_wrong_key_and_the_inbound_key(admin: Harness):
    for method, path, body in ROUTES:
        for key in (None, "not-the-admin-key", INBOUND_KEY, f"{ADMIN_KEY}x"):
            response = await call(admin, method, path, body, key=key)
            assert response.status_code == 401, (method, path, key)
            assert response.json()["error"]["code"] == "invalid_admin_key"
        # the key is checked before the body: a bad body without the key is still a 401
        refused = await call(admin, method, path, {"sender_id": 5}, key=None)
        assert refused.status_code == 401


async def test_the_inbound_key_in_x_api_key_does_not_open_the_admin_api(admin: Harness):
    async with httpx.AsyncClient(base_url=admin.url, timeout=10) as client:
        response = await client.get("/api/admin/installations", headers={"X-API-Key": INBOUND_KEY})
    assert response.status_code == 401


async def test_without_admin_api_key_the_admin_api_is_off(harness: Harness):
    harness.env.update(INBOUND_API_KEY=INBOUND_KEY)
    harness.start()
    for method, path, body in ROUTES:
        for key in (None, INBOUND_KEY):
            response = await call(harness, method, path, body, key=key)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"]["code"] == "admin_disabled"


async def test_cast_rates_list_the_keys_slowed_down_by_a_429(admin: Harness):
    key = admin.env["CAST_API_KEY"]
    await admin.with_store(lambda s: CastPacer(s, 50.0, 30.0).rate_limited(key, 50.0, 0.0))

    response = await call(admin, "GET", "/api/admin/cast-rates")

    assert response.status_code == 200
    assert response.json() == {
        "configured": 50.0,
        "keys": [{"key": key_label(key), "rate": 40.0, "slowed": True}],
    }


async def test_installations_are_listed_without_tokens(admin: Harness):
    response = await call(admin, "GET", "/api/admin/installations")

    assert response.status_code == 200
    (row,) = response.json()["installations"]
    assert (row["id"], row["kind"], row["location_id"]) == (
        f"location:{LOCATION}",
        "location",
        LOCATION,
    )
    assert row["needs_reauth"] is False
    assert "access" not in response.text and "refresh" not in response.text.replace("refresh_", "")
    assert not {"access_token", "refresh_token"} & set(row)


async def test_a_message_and_its_history_are_shown_by_ghl_message_id(admin: Harness):
    await admin.post(webhook("m-show"))
    shown = await wait_message(admin, "m-show", "delivered")

    assert shown["to"] == "********4567" and shown["location_id"] == LOCATION
    assert shown["delivery"] == "confirmed" and shown["reported"] is True
    assert [e["event"] for e in shown["history"]] == [
        "received",
        "route",
        "cast_accepted",
        "carrier_receipt",
        "delivered",
        "reported",
    ]
    assert shown["parts"][0]["cast_message_id"] == admin.cast.sent[0]["message_id"]
    assert (shown["channel"], shown["parts"][0]["channel"]) == ("sms", "sms")
    assert "Hello from GHL" not in str(shown) and "9171234567" not in str(shown)
    missing = await call(admin, "GET", "/api/admin/messages/m-nope")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "message_not_found")


async def test_a_failed_message_is_requeued_sent_once_and_reported_delivered(admin: Harness):
    admin.cast.fail_next(1, 402, "INSUFFICIENT_CREDITS")
    await admin.post(webhook("m-credits"))
    failed = await wait_message(admin, "m-credits", "failed")
    assert failed["error_code"] == "INSUFFICIENT_CREDITS" and admin.cast.sent == []

    response = await call(admin, "POST", "/api/admin/messages/m-credits/requeue")

    assert response.status_code == 202
    assert (response.json()["state"], response.json()["status"]) == ("pending", "sending")
    await admin.wait_for(lambda: len(admin.statuses_for("m-credits")) == 2, what="2nd status")
    assert admin.statuses_for("m-credits")[0]["status"] == "failed"
    assert admin.statuses_for("m-credits")[1] == {"status": "delivered"}
    (sms,) = admin.cast.sent
    assert sms["idempotency_key"] == "ghl:m-credits:1/1"  # never accepted: same key
    shown = await wait_message(admin, "m-credits", "delivered")
    assert shown["requeues"] == 1 and "requeued" in [e["event"] for e in shown["history"]]


async def test_a_carrier_rejected_message_is_sent_again_under_a_new_key(admin: Harness):
    admin.cast.next_dlr.append([{"status": "undelivered", "dlr_status": "REJECTD"}])
    await admin.post(webhook("m-rejected"))
    await wait_message(admin, "m-rejected", "failed")
    assert admin.statuses_for("m-rejected")[0]["status"] == "failed"

    assert (await call(admin, "POST", "/api/admin/messages/m-rejected/requeue")).status_code == 202

    await admin.wait_for(lambda: len(admin.statuses_for("m-rejected")) == 2, what="2nd status")
    assert admin.statuses_for("m-rejected")[1] == {"status": "delivered"}
    keys = [sms["idempotency_key"] for sms in admin.cast.sent]
    assert keys == ["ghl:m-rejected:1/1", "ghl:m-rejected:1/1:r1"]


async def test_a_delivered_unknown_or_unsendable_message_is_not_requeued(admin: Harness):
    await admin.post(webhook("m-done"))
    await admin.post(webhook("m-bad-phone", phone="12345"))
    await wait_message(admin, "m-done", "delivered")
    await wait_message(admin, "m-bad-phone", "failed")

    delivered = await call(admin, "POST", "/api/admin/messages/m-done/requeue")
    unknown = await call(admin, "POST", "/api/admin/messages/m-unknown/requeue")
    unsendable = await call(admin, "POST", "/api/admin/messages/m-bad-phone/requeue")

    assert (delivered.status_code, delivered.json()["error"]["code"]) == (409, "message_delivered")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "message_not_found")
    assert (unsendable.status_code, unsendable.json()["error"]["code"]) == (409, "not_requeueable")
    await asyncio.sleep(0.3)
    assert len(admin.cast.sent) == 1


async def test_unroutable_replies_are_listed_rerouted_and_discarded(admin: Harness):
    await reply(admin, "gw-a", "09170000001")
    await reply(admin, "gw-b", "09170000002")
    for _ in range(300):
        listed = (await call(admin, "GET", "/api/admin/inbound/unroutable")).json()["messages"]
        if len(listed) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(m["id"], m["from"], m["text"]) for m in listed] == [
        ("gw:gw-a", "********0001", "reply gw-a"),
        ("gw:gw-b", "********0002", "reply gw-b"),
    ]

    rerouted = await call(
        admin, "POST", "/api/admin/inbound/gw:gw-a/reroute", {"locationId": LOCATION}
    )
    discarded = await call(admin, "POST", "/api/admin/inbound/gw:gw-b/discard")

    assert rerouted.status_code == 202 and discarded.status_code == 200
    await admin.wait_for(lambda: admin.ghl.inbound, what="the re-routed reply at GHL")
    assert [m["body"]["message"] for m in admin.ghl.inbound] == ["reply gw-a"]
    assert (await call(admin, "GET", "/api/admin/inbound/unroutable")).json()["messages"] == []
    again = await call(admin, "POST", "/api/admin/inbound/gw:gw-b/discard")
    assert again.status_code == 404
    unknown = await call(admin, "POST", "/api/admin/inbound/gw:nope/reroute", {"location_id": "x"})
    assert unknown.status_code == 404
    await admin.wait_for(lambda: len(admin.ghl.inbound) == 1, what="delivery")
    await asyncio.sleep(0.2)
    delivered = await call(
        admin, "POST", "/api/admin/inbound/gw:gw-a/reroute", {"location_id": "x"}
    )
    assert (delivered.status_code, delivered.json()["error"]["code"]) == (409, "not_reroutable")
    no_location = await call(admin, "POST", "/api/admin/inbound/gw:gw-b/reroute", {})
    assert (no_location.status_code, no_location.json()["error"]["field"]) == (422, "location_id")


async def test_the_go_bridge_sender_id_call_sets_the_sender_of_later_sms(admin: Harness):
    path = f"/api/admin/locations/{LOCATION}/sender-id"

    response = await call(admin, "PUT", path, {"sender_id": "ACME"})

    assert response.status_code == 200
    assert response.json()["effective_sender_id"] == "ACME" and response.json()["installed"]
    await admin.post(webhook("m-acme"))
    await admin.wait_for(lambda: admin.cast.sent, what="send")
    assert admin.cast.sent[-1]["sender_id"] == "ACME"

    camel = await call(admin, "PUT", path, {"senderId": "NEWCO"})
    assert camel.status_code == 200 and camel.json()["sender_id"] == "NEWCO"
    invalid = await call(admin, "PUT", path, {"sender_id": "WAY TOO LONG ID"})
    assert (invalid.status_code, invalid.json()["error"]["field"]) == (422, "sender_id")
    cleared = await call(admin, "PUT", path, {"sender_id": None})
    assert cleared.status_code == 200 and cleared.json()["effective_sender_id"] == "CASTTEST"
    await admin.post(webhook("m-default"))
    await admin.wait_for(lambda: len(admin.cast.sent) == 2, what="second send")
    assert admin.cast.sent[-1]["sender_id"] == "CASTTEST"


async def test_a_sender_assigned_to_another_agency_is_a_409_and_shared_within_one_is_said(
    admin: Harness,
):
    await admin.seed_installation("loc-b2")  # the same agency as LOCATION
    await admin.seed_installation("loc-a", company_id="agency-a")
    body = {"sender_id": "+639170000002"}
    await call(admin, "PUT", f"/api/admin/locations/{LOCATION}/sender-id", body)

    shared = await call(admin, "PUT", "/api/admin/locations/loc-b2/sender-id", body)
    foreign = await call(admin, "PUT", "/api/admin/locations/loc-a/sender-id", body)

    assert shared.status_code == 200 and shared.json()["shared_with"] == [LOCATION]
    assert foreign.status_code == 409
    assert foreign.json()["error"]["code"] == "sender_id_assigned_elsewhere"
    assert foreign.json()["error"]["field"] == "sender_id"


async def test_an_unroutable_replys_receiving_number_is_shown_in_full_its_sender_masked(
    admin: Harness,
):
    payload = {"from": "09171234567", "message": "hi", "to": "09170000009", "id": "gw-sim"}
    async with httpx.AsyncClient(base_url=admin.url, timeout=10) as client:
        await client.post(
            "/webhooks/cast/inbound", json=payload, headers={"X-API-Key": INBOUND_KEY}
        )

    for _ in range(300):
        listed = (await call(admin, "GET", "/api/admin/inbound/unroutable")).json()["messages"]
        if listed:
            break
        await asyncio.sleep(0.05)

    assert [(m["from"], m["to"]) for m in listed] == [("********4567", "09170000009")]


async def test_a_locations_opt_outs_are_listed_masked_and_one_is_lifted_with_a_reason(
    admin: Harness,
):
    await admin.with_store(lambda store: seed_optouts(store, "+639171234567", "+639181110000"))

    listed = await call(admin, "GET", f"/api/admin/locations/{LOCATION}/optouts")
    lifted = await call(
        admin,
        "POST",
        f"/api/admin/locations/{LOCATION}/optouts/0917-123-4567/lift",
        {"reason": "customer re-subscribed by email"},
    )
    by_id = listed.json()["optouts"][1]["id"]
    lifted_by_id = await call(
        admin, "POST", f"/api/admin/locations/{LOCATION}/optouts/{by_id}/lift", {"reason": "test"}
    )
    again = await call(
        admin,
        "POST",
        f"/api/admin/locations/{LOCATION}/optouts/09171234567/lift",
        {"reason": "lifted twice"},
    )
    no_reason = await call(
        admin, "POST", f"/api/admin/locations/{LOCATION}/optouts/09181110000/lift", {}
    )

    assert listed.status_code == 200 and listed.json()["count"] == 2
    assert [row["phone"] for row in listed.json()["optouts"]] == ["********4567", "********0000"]
    assert "9171234567" not in listed.text
    assert lifted.status_code == 200 and lifted.json()["source"] == "keyword"
    assert lifted_by_id.status_code == 200 and lifted_by_id.json()["phone"] == "********0000"
    assert again.status_code == 404 and again.json()["error"]["code"] == "optout_not_found"
    assert no_reason.status_code == 422 and no_reason.json()["error"]["field"] == "reason"
    assert "customer re-subscribed by email" in admin.logs()
    assert (await call(admin, "GET", f"/api/admin/locations/{LOCATION}/optouts")).json()[
        "count"
    ] == 0
