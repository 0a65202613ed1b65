"""GHL's Delivery URL is an ordinary route: the middleware of every route applies to it (a request
id on the answer and on its log lines, the HTTP metrics, the JSON error contract), whatever the
body's framing."""

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.devkit.harness import webhook
from app.devkit.signing import TestKeys, test_keys
from app.kit.logs import request_id_var
from app.main import create_app
from app.oauth.service import OAuthService
from app.outbound.service import OutboundService
from tests.test_health import settings_for

PATH = "/webhooks/ghl/outbound"
KEYS: TestKeys = test_keys()


class RequestIds(logging.Handler):
    """Each line logged under `app` with the request id current when it was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), request_id_var.get()))


@pytest.fixture
async def bridge(tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    settings = settings_for(data_dir=str(tmp_path), mongo_uri="")
    settings.ghl_webhook_public_key = KEYS.public_pems
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield client, app


@pytest.fixture
def request_ids() -> Iterator[RequestIds]:
    handler = RequestIds()
    logger = logging.getLogger("app")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def signed(message_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(webhook(message_id)).encode()
    return body, {"Content-Type": "application/json", **KEYS.ed25519_headers(body)}


async def test_a_webhook_answer_and_its_log_lines_carry_one_request_id(bridge, request_ids):
    client, _ = bridge
    body, headers = signed("m-hot-1")

    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 202
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 16
    assert ("outbound message queued", request_id) in request_ids.lines


async def test_a_webhook_is_counted_in_the_http_metrics_under_its_route(bridge):
    client, app = bridge
    body, headers = signed("m-hot-2")

    await client.post(PATH, content=body, headers=headers)
    await client.post(PATH, content=b"{}", headers={"Content-Type": "application/json"})

    registry = app.state.http_metrics_registry
    labels = {"handler": PATH, "method": "POST"}
    counted = registry.get_sample_value
    assert counted("bridge_http_requests_total", {**labels, "status": "2xx"}) == 1
    assert counted("bridge_http_requests_total", {**labels, "status": "4xx"}) == 1
    assert counted("bridge_http_request_duration_seconds_count", labels) == 2


async def test_a_chunked_webhook_is_answered_as_one_with_a_content_length(bridge):
    client, _ = bridge
    body, headers = signed("m-hot-3")

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    response = await client.post(PATH, content=chunks(), headers=headers)

    assert response.status_code == 202
    assert response.json() == {"status": "queued", "messageId": "m-hot-3"}
    assert len(response.headers["x-request-id"]) == 16


async def test_an_unexpected_error_in_a_webhook_is_a_logged_json_500(
    bridge, request_ids, monkeypatch
):
    client, app = bridge

    async def broken(self, payload):
        raise RuntimeError("a bug")

    monkeypatch.setattr(OutboundService, "accept", broken)
    body, headers = signed("m-hot-4")

    response = await client.post(PATH, content=body, headers=headers)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert ("unhandled error", response.headers["x-request-id"]) in request_ids.lines
    registry = app.state.http_metrics_registry
    labels = {"handler": PATH, "method": "POST", "status": "5xx"}
    assert registry.get_sample_value("bridge_http_requests_total", labels) == 1


async def test_an_unexpected_error_in_any_other_route_is_the_same_json_500(
    bridge, request_ids, monkeypatch
):
    client, _ = bridge

    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(OAuthService, "install_url", broken)

    response = await client.get("/oauth/install")

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert ("unhandled error", response.headers["x-request-id"]) in request_ids.lines
