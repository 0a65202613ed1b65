"""Unit tests of the GHL client (respx)."""

import json

import httpx
import pytest
import respx

from app.ghl.client import GHLClient, GHLError
from app.ghl.schemas import StatusError, StatusUpdate

BASE = "https://ghl.test"


@pytest.fixture
async def client():
    async with httpx.AsyncClient(base_url=BASE, timeout=2) as http:
        yield GHLClient(http)


@respx.mock
async def test_a_status_update_is_a_put_with_bearer_and_version(client):
    route = respx.put(f"{BASE}/conversations/messages/m1/status").respond(200, json={})
    await client.update_message_status("tok", "m1", StatusUpdate(status="delivered"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["Version"] == "2021-04-15"
    assert json.loads(request.content) == {"status": "delivered"}


@respx.mock
async def test_a_failed_status_carries_the_error_object(client):
    route = respx.put(f"{BASE}/conversations/messages/m1/status").respond(200, json={})
    update = StatusUpdate(status="failed", error=StatusError(code="X", message="why"))
    await client.update_message_status("tok", "m1", update)
    assert json.loads(route.calls.last.request.content) == {
        "status": "failed",
        "error": {"code": "X", "type": "saas", "message": "why"},
    }


@pytest.mark.parametrize(
    ("status", "retryable"), [(403, True), (429, True), (500, True), (404, False), (422, False)]
)
@respx.mock
async def test_which_answers_are_worth_retrying(client, status, retryable):
    respx.put(f"{BASE}/conversations/messages/m1/status").respond(status, json={})
    with pytest.raises(GHLError) as caught:
        await client.update_message_status("tok", "m1", StatusUpdate(status="delivered"))
    assert caught.value.retryable is retryable


@respx.mock
async def test_401_is_flagged_unauthorized(client):
    respx.put(f"{BASE}/conversations/messages/m1/status").respond(401, json={})
    with pytest.raises(GHLError) as caught:
        await client.update_message_status("tok", "m1", StatusUpdate(status="delivered"))
    assert caught.value.unauthorized


@respx.mock
async def test_the_token_exchange_is_form_encoded(client):
    route = respx.post(f"{BASE}/oauth/token").respond(
        200,
        json={
            "access_token": "a",
            "refresh_token": "r",
            "expires_in": 86399,
            "userType": "Location",
            "locationId": "L",
        },
    )
    token = await client.exchange_token({"grant_type": "refresh_token", "refresh_token": "r0"})
    assert route.calls.last.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (token.access_token, token.location_id, token.user_type) == ("a", "L", "Location")
