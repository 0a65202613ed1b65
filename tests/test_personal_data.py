"""Personal data stays in: phone numbers masked whatever their spelling (errors, failure reasons,
logs, admin views), the SQLite files owner-only, the API docs off, /readyz without error text."""

import json
import logging
import stat
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.admin.schemas import MessageView
from app.devkit.harness import webhook
from app.ghl.schemas import ProviderOutboundMessage
from app.kit.logs import JsonFormatter, mask_phones_in
from app.outbound.service import build_message
from app.phone import InvalidPhoneNumber, to_cast_local
from app.store.sqlite import SQLiteStore
from tests.test_health import client_for, settings_for

SPELLINGS = [
    "+63+9171234567",
    "0917x123x4567",
    "0917.123.4567",
    "0917/123/4567",
    "+63 (917) 123-4567",
    "0917 123 4567",
    "639171234567",
]


@pytest.mark.parametrize("phone", SPELLINGS)
def test_a_phone_in_free_text_is_masked_whatever_its_spelling(phone):
    masked = mask_phones_in(f"Cannot send to {phone}: refused")

    assert "4567" in masked and "917" not in masked.replace("4567", "")


@pytest.mark.parametrize(
    "text", ["part 1/2 CAST00000001", "retrying in 12.5s", "HTTP 429", "(2 of 3 parts sent)"]
)
def test_text_without_a_phone_is_left_alone(text):
    assert mask_phones_in(text) == text


@pytest.mark.parametrize("raw", ["+63+9171234567", "0917x123x4567", "+639171234567890"])
def test_the_phone_normaliser_never_echoes_its_input(raw):
    with pytest.raises(InvalidPhoneNumber) as caught:
        to_cast_local(raw)

    assert "917" not in str(caught.value) and "4567" not in str(caught.value)


def test_a_failure_reason_is_stored_with_the_phone_masked():
    payload = ProviderOutboundMessage.model_validate(webhook("m-1", phone="+63+9171234567"))

    message = build_message(payload, 450, time.time())

    assert message.status == "failed" and message.error_code == "INVALID_PHONE"
    assert "9171234567" not in (message.error_message or "")
    assert all("9171234567" not in (event.detail or "") for event in message.history)


def test_the_admin_view_masks_a_phone_spelled_with_letters_between_digits():
    payload = ProviderOutboundMessage.model_validate(webhook("m-2", phone="0917x123x4567"))
    message = build_message(payload, 450, time.time())
    message.record(time.time(), "note", "old detail with 0917x123x4567")

    shown = json.dumps(MessageView.of(message, finished=True).model_dump())

    assert "0917x123x4567" not in shown and "9171234567" not in shown


def test_a_log_line_masks_phones_in_its_event_and_reason():
    record = logging.makeLogRecord(
        {"msg": "refused 0917x123x4567", "levelname": "WARNING", "reason": "to +63+9171234567"}
    )

    line = JsonFormatter().format(record)

    assert "0917x123x4567" not in line and "9171234567" not in line and "4567" in line


async def test_the_sqlite_files_are_created_owner_only(tmp_path):
    store = SQLiteStore(tmp_path / "db" / "cast-ghl.sqlite3")
    await store.start()
    await store.put_doc("settings", "a", {"x": 1})
    try:
        files = list((tmp_path / "db").iterdir())
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        await store.close()

    assert "cast-ghl.sqlite3" in modes and "cast-ghl.sqlite3-wal" in modes
    assert set(modes.values()) == {0o600}, modes


async def test_an_older_world_readable_sqlite_file_is_tightened(tmp_path):
    path = tmp_path / "cast-ghl.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = SQLiteStore(path)
    await store.start()
    await store.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(settings_for(data_dir=str(tmp_path), mongo_uri="")):
        yield c


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_the_api_docs_are_off_by_default(client, path):
    assert (await client.get(path)).status_code == 404


async def test_the_api_docs_are_served_with_api_docs_true(tmp_path):
    settings = settings_for(data_dir=str(tmp_path), mongo_uri="", api_docs=True)
    async for client in client_for(settings):
        schema = await client.get("/openapi.json")
        assert schema.status_code == 200 and "/api/admin/installations" in schema.json()["paths"]
        assert (await client.get("/docs")).status_code == 200


async def test_an_invalid_inbound_sender_is_refused_without_echoing_it(tmp_path):
    settings = settings_for(data_dir=str(tmp_path), mongo_uri="", inbound_api_key="k" * 20)
    async for client in client_for(settings):
        response = await client.post(
            "/webhooks/cast/inbound",
            json={"from": "+63+9171234567", "message": "hi", "id": "gw-1"},
            headers={"X-API-Key": "k" * 20},
        )
        assert response.status_code == 422 and "9171234567" not in response.text
