"""Hostile input that once reached a 500, escaped an upstream path or wedged a message: each is
now a 4xx, ignored safely or bounded. Units, and the app in-process through ASGITransport."""

import json
import math
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from pydantic import ValidationError

from app.cast.client import CastClient, CastError
from app.cast.schemas import SendRequest, checked_cast_key
from app.config import SettingsError, load_settings
from app.devkit.harness import CAST_KEY
from app.devkit.signing import test_keys
from app.ghl.client import GHLClient
from app.ghl.pacing import Unpaced
from app.ghl.schemas import StatusUpdate
from app.kit.retry import MAX_RETRY_AFTER_SECONDS, retry_after_seconds
from app.kit.urls import path_segment
from app.locations.schemas import SettingsForm
from app.metrics import unobserved
from app.oauth.service import parse_timestamp
from tests.test_health import sqlite_client_for

TRAVERSAL = "../../contacts/abc?x="
INBOUND_KEY = "inbound-key-hostile-input"


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in sqlite_client_for(
        tmp_path,
        inbound_api_key=INBOUND_KEY,
        ghl_app_sso_key="sso-key-hostile-input",
        ghl_webhook_public_key=test_keys().public_pems,
    ):
        yield c


# Unauthenticated 500s ----------------------------------------------------------------------
async def test_an_oauth_state_with_non_ascii_text_is_refused_not_a_500(client):
    response = await client.get("/oauth/callback?code=x&state=abc.%C3%A9")

    assert response.status_code == 400


async def test_a_settings_session_with_non_ascii_text_is_refused_not_a_500(client):
    response = await client.post(
        "/settings/view",
        content="session=abc.%C3%A9",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 401


async def test_an_inbound_received_at_past_the_last_utc_instant_is_a_422(client):
    payload = {"from": "09171234567", "message": "hi", "received_at": "9999-12-31T23:59:59-23:59"}

    response = await client.post(
        "/webhooks/cast/inbound", json=payload, headers={"X-API-Key": INBOUND_KEY}
    )

    assert response.status_code == 422 and response.json()["error"]["field"] == "received_at"


@pytest.mark.parametrize("timestamp", ["NaN", "inf", "-Infinity"])
async def test_an_app_webhook_with_a_non_finite_timestamp_is_a_422(client, timestamp):
    event = {"type": "INSTALL", "appId": "id", "locationId": "loc-1", "timestamp": timestamp}
    body = json.dumps({**event, "webhookId": "wh-1"}).encode()

    response = await client.post(
        "/webhooks/ghl/app", content=body, headers=test_keys().ed25519_headers(body)
    )

    assert response.status_code == 422 and response.json()["error"]["field"] == "timestamp"


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", math.nan, math.inf])
def test_a_non_finite_timestamp_does_not_parse(value):
    with pytest.raises(ValueError, match="finite"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        *[("nan", None), ("inf", None), ("-inf", None), ("soon", None), (None, None)],
        *[("-5", 0.0), ("2.5", 2.5), ("1e12", MAX_RETRY_AFTER_SECONDS)],
    ],
)
def test_retry_after_is_finite_and_bounded_or_absent(header, seconds):
    assert retry_after_seconds(header) == seconds


@respx.mock
async def test_a_cast_429_with_a_nan_retry_after_falls_back_to_backoff():
    respx.post("https://cast.test/api/v1/sms/send").respond(
        429,
        json={"success": False, "error_code": "RATE_LIMIT_EXCEEDED"},
        headers={"Retry-After": "nan"},
    )
    async with httpx.AsyncClient(base_url="https://cast.test") as http:
        with pytest.raises(CastError) as caught:
            await CastClient(http, unobserved).send_sms(
                CAST_KEY, SendRequest(to="09171234567", message="hi"), idempotency_key="k"
            )

    assert caught.value.retryable and caught.value.retry_after is None


# Ids in upstream paths ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "segment"),
    [
        (TRAVERSAL, "..%2F..%2Fcontacts%2Fabc%3Fx%3D"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a b#c%d", "a%20b%23c%25d"),
        ("msg-123", "msg-123"),
    ],
)
def test_an_id_stays_one_path_segment(value, segment):
    assert path_segment(value) == segment


@respx.mock
async def test_a_ghl_status_update_keeps_a_traversal_message_id_in_its_segment():
    route = respx.route().respond(200, json={})
    async with httpx.AsyncClient(base_url="https://ghl.test") as http:
        await GHLClient(http, unobserved, Unpaced()).update_message_status(
            "tok", TRAVERSAL, StatusUpdate(status="delivered"), location_id="loc-1"
        )

    request = route.calls.last.request
    assert request.url.raw_path == b"/conversations/messages/..%2F..%2Fcontacts%2Fabc%3Fx%3D/status"


@respx.mock
async def test_a_cast_status_poll_keeps_a_traversal_message_id_in_its_segment():
    route = respx.route().respond(200, json={"success": True, "status": "sent"})
    async with httpx.AsyncClient(base_url="https://cast.test") as http:
        await CastClient(http, unobserved).message_status(CAST_KEY, "../balance")

    assert route.calls.last.request.url.raw_path == b"/api/v1/sms/status/..%2Fbalance"


# Cast key shape ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["cast_" + "0a" * 32, "cast_test_" + "F" * 64])
def test_a_cast_key_of_the_documented_shape_is_accepted(key):
    assert checked_cast_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "cast_éééééééé",
        "cast_" + "é" * 64,
        "cast_" + "0a" * 31,
        "cast_" + "0a" * 33,
        "cast_" + "g" * 64,
        "cast_ " + "0a" * 32,
        "sk_live_" + "0a" * 32,
    ],
)
def test_a_cast_key_of_another_shape_is_refused(key):
    with pytest.raises(ValueError, match="64 hex"):
        checked_cast_key(key)


def test_the_settings_form_refuses_a_non_ascii_cast_key():
    with pytest.raises(ValidationError, match="64 hex"):
        SettingsForm(api_key="cast_éééééééé")


def test_the_environment_refuses_a_non_ascii_cast_key_without_echoing_it():
    with pytest.raises(SettingsError) as caught:
        load_settings(ghl_client_id="id", ghl_client_secret="s", cast_api_key="cast_ééééé")

    assert "CAST_API_KEY: must be a Cast API key" in str(caught.value)
    assert "ééééé" not in str(caught.value)
