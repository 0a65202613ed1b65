"""Unit tests of the Cast client (respx): what it sends and how it reads Cast's answers."""

import json

import httpx
import pytest
import respx

from app.cast.client import CastClient, CastError
from app.cast.schemas import SendRequest
from app.metrics import unobserved

BASE = "https://cast.test"
REQUEST = SendRequest(to="09171234567", message="hi", sender_id="CAST")


@pytest.fixture
async def client():
    async with httpx.AsyncClient(base_url=BASE, timeout=2) as http:
        yield CastClient(http, unobserved)


@respx.mock
async def test_a_send_carries_the_key_the_idempotency_key_and_the_body(client):
    route = respx.post(f"{BASE}/api/v1/sms/send").respond(
        200, json={"success": True, "message_id": "CAST1", "parts": 1}
    )
    result = await client.send_sms("cast_k", REQUEST, idempotency_key="ghl:m1:1/1")
    sent = route.calls.last.request
    assert sent.headers["X-API-Key"] == "cast_k"
    assert sent.headers["X-Idempotency-Key"] == "ghl:m1:1/1"
    assert json.loads(sent.content) == {"to": "09171234567", "message": "hi", "sender_id": "CAST"}
    assert (result.message_id, result.parts, result.replayed) == ("CAST1", 1, False)


@respx.mock
async def test_a_replayed_answer_is_flagged(client):
    respx.post(f"{BASE}/api/v1/sms/send").respond(
        200,
        json={"success": True, "message_id": "CAST1", "parts": 1},
        headers={"X-Idempotent-Replay": "true"},
    )
    assert (await client.send_sms("k", REQUEST, idempotency_key="x")).replayed


@respx.mock
async def test_success_false_on_a_200_is_an_error(client):
    respx.post(f"{BASE}/api/v1/sms/send").respond(200, json={"success": False, "error": "nope"})
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert not caught.value.retryable and "nope" in caught.value.message


@respx.mock
async def test_429_is_retryable_and_carries_retry_after(client):
    respx.post(f"{BASE}/api/v1/sms/send").respond(
        429,
        json={"success": False, "error": "slow down", "error_code": "RATE_LIMIT_EXCEEDED"},
        headers={"Retry-After": "3"},
    )
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert caught.value.retryable and caught.value.retry_after == 3.0
    assert caught.value.code == "RATE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("status", [500, 502, 503])
@respx.mock
async def test_5xx_is_retryable(client, status):
    respx.post(f"{BASE}/api/v1/sms/send").respond(status, text="oops")
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert caught.value.retryable and caught.value.code == f"HTTP_{status}"


@pytest.mark.parametrize(
    ("status", "operator"), [(400, False), (401, True), (402, True), (403, True)]
)
@respx.mock
async def test_other_4xx_are_final_and_key_or_credit_problems_are_operator_problems(
    client, status, operator
):
    respx.post(f"{BASE}/api/v1/sms/send").respond(
        status, json={"success": False, "error": "bad", "error_code": "X"}
    )
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert not caught.value.retryable and caught.value.operator_problem is operator


@respx.mock
async def test_a_timeout_is_retryable(client):
    respx.post(f"{BASE}/api/v1/sms/send").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert caught.value.retryable and caught.value.status is None


@respx.mock
async def test_a_connection_error_is_retryable(client):
    respx.post(f"{BASE}/api/v1/sms/send").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(CastError) as caught:
        await client.send_sms("k", REQUEST, idempotency_key="x")
    assert caught.value.retryable
