"""MAX_BODY_BYTES: every route refuses a larger body with 413 while reading it, before any
signature, key or JSON check; driven in-process through ASGITransport."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.test_health import sqlite_client_for

LIMIT = 4096
ADMIN_KEY = "admin-key-for-body-limit-tests"
ROUTES = [
    ("POST", "/webhooks/ghl/outbound"),
    ("POST", "/api/ghl/v1/webhook/messages"),
    ("POST", "/webhooks/ghl/app"),
    ("POST", "/webhooks/cast/inbound"),
    ("PUT", "/api/admin/locations/loc-1/sender-id"),
    ("POST", "/api/admin/inbound/gw:x/reroute"),
    ("POST", "/settings/save"),
]
UNREAD = [("GET", "/healthz"), ("POST", "/nope")]  # routes that never read a body
KEYS = {"Authorization": f"Bearer {ADMIN_KEY}", "X-API-Key": "inbound-key-for-body-limit"}


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in sqlite_client_for(
        tmp_path,
        max_body_bytes=LIMIT,
        admin_api_key=ADMIN_KEY,
        inbound_api_key="inbound-key-for-body-limit",
    ):
        yield c


class Chunks:
    """A chunked body of `count` chunks of 1 KiB that counts how many were pulled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield b"x" * 1024


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text)
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(("method", "path"), ROUTES + UNREAD)
async def test_a_declared_length_over_the_limit_is_413_on_every_route(client, method, path):
    response = await client.request(method, path, content=b"{" + b" " * LIMIT + b"}")

    assert_too_large(response)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_chunked_body_is_refused_as_soon_as_it_grows_past_the_limit(client, method, path):
    body = Chunks(1000)

    response = await client.request(method, path, content=body, headers=KEYS)

    assert_too_large(response)
    assert body.pulled <= LIMIT // 1024 + 2  # stopped reading at the limit, not at 1000 KiB


@pytest.mark.parametrize(("method", "path"), UNREAD)
async def test_a_chunked_body_a_route_does_not_read_is_never_pulled(client, method, path):
    body = Chunks(1000)

    response = await client.request(method, path, content=body)

    assert response.status_code in (200, 404) and body.pulled <= 1


async def test_a_chunked_body_without_the_key_is_refused_unread(client):
    body = Chunks(1000)

    response = await client.post("/webhooks/cast/inbound", content=body)

    assert response.status_code == 401 and body.pulled <= 1


async def test_a_body_at_the_limit_is_read_as_usual(client):
    response = await client.post(
        "/webhooks/ghl/outbound",
        content=b"{" + b" " * (LIMIT - 2) + b"}",
        headers={"X-GHL-Signature": "bad"},
    )

    assert response.status_code == 401


async def test_the_413_carries_the_request_id(client):
    response = await client.post("/webhooks/ghl/outbound", content=b"x" * (LIMIT + 1))

    assert response.status_code == 413 and len(response.headers["x-request-id"]) == 16


async def test_the_admin_key_is_checked_before_the_body_is_parsed(client):
    response = await client.put("/api/admin/locations/loc-1/sender-id", content=b"{bad")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_admin_key"


async def test_an_admin_body_that_is_not_json_is_400_once_the_key_matched(client):
    response = await client.put(
        "/api/admin/locations/loc-1/sender-id",
        content=b"{bad",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
