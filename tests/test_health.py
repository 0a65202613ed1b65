"""Health and readiness, driven in-process through ASGITransport."""

import json
import signal
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import load_settings
from app.devkit.harness import CAST_KEY, ENCRYPTION_KEY, webhook
from app.devkit.processes import free_port, stop
from app.devkit.signing import test_keys
from app.main import create_app
from app.store import SQLITE_FILENAME
from tests.support.broken_store import corrupt_sqlite_schema, with_short_timeouts
from tests.support.mongo_wire_server import start_mongo_wire_server


def settings_for(**store: object):
    return load_settings(
        ghl_client_id="id",
        ghl_client_secret="secret",
        cast_api_key=CAST_KEY,
        token_encryption_key=ENCRYPTION_KEY,
        **store,
    )


async def client_for(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield client


async def sqlite_client_for(tmp_path, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a bridge on an SQLite store in tmp_path, with `settings` on top."""
    async for c in client_for(settings_for(data_dir=str(tmp_path), mongo_uri="", **settings)):
        yield c


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in sqlite_client_for(tmp_path):
        yield c


async def test_healthz_answers_ok_without_io(client):
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_names_the_store_in_use(client):
    response = await client.get("/readyz")
    assert response.status_code == 200 and response.json()["store"] == "sqlite"


async def test_every_response_carries_a_request_id(client):
    assert len((await client.get("/healthz")).headers["x-request-id"]) == 16


async def test_an_unknown_path_is_a_json_404(client):
    response = await client.get("/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_readyz_is_503_naming_the_store_while_mongodb_is_down_and_recovers():
    port = free_port()
    proc, uri = start_mongo_wire_server(port)
    try:
        async for client in client_for(settings_for(mongo_uri=uri, mongo_db="ready_test")):
            assert (await client.get("/readyz")).status_code == 200
            stop(proc, signal.SIGKILL)
            down = await client.get("/readyz")
            assert down.status_code == 503 and down.json() == {
                "status": "unavailable",
                "failing": "store",  # named, without the driver's error text (that is logged)
            }
            proc, _ = start_mongo_wire_server(port)
            for _ in range(50):
                if (await client.get("/readyz")).status_code == 200:
                    break
            else:
                raise AssertionError("readyz did not recover after MongoDB came back")
    finally:
        stop(proc)


async def test_a_webhook_while_the_database_is_down_is_a_503_to_retry_not_a_500():
    port = free_port()
    proc, uri = start_mongo_wire_server(port)
    settings = settings_for(mongo_uri=with_short_timeouts(uri), mongo_db="down_test")
    settings.ghl_webhook_public_key = test_keys().public_pems
    body = json.dumps(webhook("m-db-down")).encode()
    headers = {"Content-Type": "application/json", **test_keys().ed25519_headers(body)}
    try:
        async for client in client_for(settings):
            stop(proc, signal.SIGKILL)
            response = await client.post("/webhooks/ghl/outbound", content=body, headers=headers)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "store_unavailable"
            assert response.headers["retry-after"] == "5"
    finally:
        stop(proc)


ADMIN_KEY = "admin-key-0123456789abcdef"


@pytest.fixture
async def failing_store_client(
    backend: str, tmp_path
) -> AsyncIterator[tuple[httpx.AsyncClient, Callable[[], None]]]:
    """An app on a working store of `backend`, and a function that breaks its database: the
    SQLite file's schema is corrupted, the MongoDB wire server is killed (short timeouts)."""
    if backend == "sqlite":
        settings = settings_for(data_dir=str(tmp_path), mongo_uri="", admin_api_key=ADMIN_KEY)
        async for client in client_for(settings):
            yield client, lambda: corrupt_sqlite_schema(tmp_path / SQLITE_FILENAME)
        return
    proc, uri = start_mongo_wire_server()
    try:
        uri = with_short_timeouts(uri)
        settings = settings_for(mongo_uri=uri, mongo_db="failing", admin_api_key=ADMIN_KEY)
        async for client in client_for(settings):
            yield client, lambda: stop(proc, signal.SIGKILL)
    finally:
        stop(proc)


async def test_a_request_whose_store_fails_is_a_json_503_with_retry_after(failing_store_client):
    client, break_database = failing_store_client
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert (await client.get("/api/admin/installations", headers=headers)).status_code == 200
    break_database()
    response = await client.get("/api/admin/installations", headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "5"
