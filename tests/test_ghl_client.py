"""Unit tests of the GHL client (respx)."""

import asyncio
import json
import time

import httpx
import pytest
import respx

from app.ghl.client import GHLClient, GHLError
from app.ghl.pacing import HEADROOM, LIMIT, WINDOW_SECONDS, GHLPacer, Unpaced, block_seconds
from app.ghl.schemas import StatusError, StatusUpdate
from app.metrics import unobserved
from app.pacing import MAX_LATENESS, spacing

BASE = "https://ghl.test"
DELIVERED = StatusUpdate(status="delivered")
NOW = 1_700_000_000.0


@pytest.fixture
async def client():
    async with httpx.AsyncClient(base_url=BASE, timeout=2) as http:
        yield GHLClient(http, unobserved, Unpaced())


@respx.mock
async def test_a_status_update_is_a_put_with_bearer_and_version(client):
    route = respx.put(f"{BASE}/conversations/messages/m1/status").respond(200, json={})
    await client.update_message_status("tok", "m1", DELIVERED, location_id="loc-1")
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["Version"] == "2021-04-15"
    assert json.loads(request.content) == {"status": "delivered"}


@respx.mock
async def test_a_failed_status_carries_the_error_object(client):
    route = respx.put(f"{BASE}/conversations/messages/m1/status").respond(200, json={})
    update = StatusUpdate(status="failed", error=StatusError(code="X", message="why"))
    await client.update_message_status("tok", "m1", update, location_id="loc-1")
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
        await client.update_message_status("tok", "m1", DELIVERED, location_id="loc-1")
    assert caught.value.retryable is retryable


@respx.mock
async def test_401_is_flagged_unauthorized(client):
    respx.put(f"{BASE}/conversations/messages/m1/status").respond(401, json={})
    with pytest.raises(GHLError) as caught:
        await client.update_message_status("tok", "m1", DELIVERED, location_id="loc-1")
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


# Pacing per location --------------------------------------------------------------------------
@respx.mock
async def test_a_429_from_ghl_is_waited_out_and_retried(store):
    route = respx.put(f"{BASE}/conversations/messages/m1/status")
    route.side_effect = [
        httpx.Response(429, headers={"X-RateLimit-Interval-Milliseconds": "300"}),
        httpx.Response(200, json={}),
    ]
    async with httpx.AsyncClient(base_url=BASE, timeout=2) as http:
        paced = GHLClient(http, unobserved, GHLPacer(store))
        started = time.monotonic()
        await paced.update_message_status("tok", "m1", DELIVERED, location_id="loc-1")
    assert route.call_count == 2
    assert time.monotonic() - started >= 0.3 - MAX_LATENESS


async def test_calls_of_one_location_are_spaced_for_every_pacer_on_the_store(store):
    pacers = [GHLPacer(store) for _ in range(2)]
    started = time.monotonic()
    await asyncio.gather(*(pacers[i % 2].before_call("loc-1") for i in range(6)))
    assert time.monotonic() - started >= 5 * spacing(LIMIT - HEADROOM, WINDOW_SECONDS) - 0.005


def test_ghl_asks_to_wait_when_no_request_remains_in_its_interval():
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-interval-milliseconds": "10000"}
    assert block_seconds(200, headers, NOW) == 10.0


def test_a_429_waits_for_retry_after_else_the_interval_else_ten_seconds():
    assert block_seconds(429, {"retry-after": "3"}, NOW) == 3.0
    assert block_seconds(429, {"x-ratelimit-interval-milliseconds": "2500"}, NOW) == 2.5
    assert block_seconds(429, {}, NOW) == 10.0


def test_an_exhausted_daily_budget_waits_for_the_next_utc_day():
    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    assert block_seconds(200, {"x-ratelimit-daily-remaining": "0"}, midnight - 60) == 60.0


def test_an_answer_with_budget_left_asks_no_wait():
    headers = {"x-ratelimit-remaining": "42", "x-ratelimit-interval-milliseconds": "10000"}
    assert block_seconds(200, headers, NOW) is None
