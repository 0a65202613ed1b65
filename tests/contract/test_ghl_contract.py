"""The bridge's requests to GHL against GHL's published API definitions (issue 27).

The facts checked are in ghl_operations.json (extracted from the official definitions by
scripts/extract_ghl_contract.py); the last tests check those facts against the full copy of the
definitions in ../shared/reference/ghl-official/ where it is present."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from app.devkit import fake_ghl
from app.ghl.client import GHLClient
from app.ghl.pacing import Unpaced
from app.ghl.schemas import InboundMessage, StatusError, StatusUpdate
from app.ghl.scopes import DEFAULT_SCOPES, OPERATIONS
from app.metrics import unobserved
from scripts.extract_ghl_contract import CALLS, DEFINITIONS, build_contract, render
from tests.contract.validator import (
    CONTRACT,
    contract,
    operation,
    recorded_from,
    request_errors,
)

BASE = "https://ghl.test"
TOKEN = "tok"


def _everything(request: httpx.Request) -> httpx.Response:
    """An answer good enough for every client method (the contract is about the request)."""
    return httpx.Response(
        200,
        json={
            "access_token": "a",
            "userId": "u",
            "contact": {"id": "contact-1"},
            "conversations": [],
            "conversation": {"id": "conv-1"},
            "locations": [],
            "conversationId": "conv-1",
            "messageId": "m",
        },
    )


type Call = Callable[[GHLClient], Awaitable[Any]]

CLIENT_CALLS: dict[str, Call] = {
    "a delivered status": lambda c: c.update_message_status(
        TOKEN, "msg-1", StatusUpdate(status="delivered"), location_id="loc-1"
    ),
    "a failed status with its error": lambda c: c.update_message_status(
        TOKEN,
        "msg-1",
        StatusUpdate(status="failed", error=StatusError(code="X", message="why")),
        location_id="loc-1",
    ),
    "an inbound message": lambda c: c.add_inbound_message(
        TOKEN,
        InboundMessage(
            message="hi",
            conversation_id="conv-1",
            contact_id="contact-1",
            alt_id="in-1",
            date="2026-07-20T08:15:30+00:00",
        ),
        location_id="loc-1",
    ),
    "an inbound message with a provider id": lambda c: c.add_inbound_message(
        TOKEN,
        InboundMessage(
            message="hi", conversation_id="c", contact_id="k", conversation_provider_id="p"
        ),
        location_id="loc-1",
    ),
    "a conversation search": lambda c: c.search_conversations(TOKEN, "loc-1", "contact-1"),
    "a new conversation": lambda c: c.create_conversation(TOKEN, "loc-1", "contact-1"),
    "a contact search": lambda c: c.find_contact_by_phone(TOKEN, "loc-1", "+639171234567"),
    "a contact upsert": lambda c: c.upsert_contact(TOKEN, "loc-1", "+639171234567"),
    "a contact read": lambda c: c.get_contact(TOKEN, "contact-1", location_id="loc-1"),
    "a DND update": lambda c: c.update_contact(
        TOKEN,
        "contact-1",
        {"dndSettings": {"SMS": {"status": "active", "message": "STOP", "code": "101"}}},
        location_id="loc-1",
    ),
    "a refresh": lambda c: c.exchange_token(
        {
            "client_id": "id",
            "client_secret": "secret",
            "grant_type": "refresh_token",
            "refresh_token": "r",
            "user_type": "Location",
            "redirect_uri": "https://bridge.test/oauth/callback",
        }
    ),
    "a location token": lambda c: c.location_token(TOKEN, "co-1", "loc-1"),
    "the installed locations": lambda c: c.installed_locations(TOKEN, "co-1", "app-1"),
}


async def _sent(call: Call) -> list[httpx.Request]:
    with respx.mock(base_url=BASE) as mock:
        mock.route().mock(side_effect=_everything)
        async with httpx.AsyncClient(base_url=BASE) as http:
            await call(GHLClient(http, unobserved, Unpaced()))
        return [c.request for c in mock.calls]


@pytest.mark.parametrize("call", CLIENT_CALLS.values(), ids=CLIENT_CALLS.keys())
async def test_each_request_of_the_ghl_client_validates_against_its_operation(call: Call):
    (request,) = await _sent(call)
    assert request_errors(recorded_from(request)) == []


async def test_the_inbound_message_names_its_conversation():
    (request,) = await _sent(CLIENT_CALLS["an inbound message"])
    assert json.loads(request.content)["conversationId"] == "conv-1"


# The validator catches what GHL would refuse ----------------------------------------------
def _inbound(**changes: Any) -> dict[str, Any]:
    recorded = {
        "method": "POST",
        "path": "/conversations/messages/inbound",
        "query": {},
        "headers": {"Authorization": "Bearer t", "Version": "2021-04-15"},
        "content_type": "application/json",
        "body": {"type": "SMS", "message": "hi", "conversationId": "c", "contactId": "k"},
    }
    return {**recorded, **changes}


def test_a_request_without_the_version_header_is_invalid():
    assert request_errors(_inbound(headers={"Authorization": "Bearer t"})) == [
        "POST /conversations/messages/inbound: Version header None, not 2021-04-15"
    ]


def test_a_request_with_another_operations_version_is_invalid():
    errors = request_errors(
        _inbound(headers={"Authorization": "Bearer t", "Version": "2021-07-28"})
    )
    assert errors == [
        "POST /conversations/messages/inbound: Version header '2021-07-28', not 2021-04-15"
    ]


def test_an_inbound_message_without_its_conversation_id_is_invalid():
    errors = request_errors(_inbound(body={"type": "SMS", "message": "hi", "contactId": "k"}))
    assert errors == ["POST /conversations/messages/inbound: conversationId missing"]


def test_direction_as_the_string_inbound_is_valid_though_the_definition_says_object():
    body = {**_inbound()["body"], "direction": "inbound"}
    assert operation("POST", "/conversations/messages/inbound")["body"]["schema"]["properties"][
        "direction"
    ] == {"type": "object"}
    assert request_errors(_inbound(body=body)) == []


def test_a_body_property_the_definition_does_not_name_is_invalid():
    body = {**_inbound()["body"], "conversationProvider": "typo"}
    assert request_errors(_inbound(body=body)) == [
        "POST /conversations/messages/inbound: conversationProvider is no property of the "
        "definition"
    ]


def test_a_value_outside_the_enum_is_invalid():
    body = {**_inbound()["body"], "type": "MMS"}
    (error,) = request_errors(_inbound(body=body))
    assert error.startswith("POST /conversations/messages/inbound.type: 'MMS' is not one of")


def test_a_missing_required_query_parameter_is_invalid():
    recorded = {
        "method": "GET",
        "path": "/conversations/search",
        "query": {"contactId": ["k"]},
        "headers": {"Authorization": "Bearer t", "Version": "2021-04-15"},
        "content_type": "",
        "body": None,
    }
    assert request_errors(recorded) == [
        "GET /conversations/search: query parameter locationId missing"
    ]


def test_a_request_to_an_operation_the_contract_does_not_list_is_invalid():
    recorded = {**_inbound(), "method": "POST", "path": "/conversations/messages"}
    assert request_errors(recorded) == [
        "POST /conversations/messages is no operation the contract lists"
    ]


# The facts the bridge depends on ----------------------------------------------------------
def test_every_operation_the_bridge_calls_needs_the_scope_the_definitions_give():
    for op in OPERATIONS:
        assert operation(op.method, op.path)["scopes"] == [op.scope], (op.method, op.path)


def test_the_default_scopes_cover_every_operation_the_bridge_calls():
    needed = {scope for op in contract()["operations"] for scope in op["scopes"]}
    assert needed <= set(DEFAULT_SCOPES.split())
    assert {"oauth.readonly", "oauth.write"} <= needed


def test_the_fake_ghl_enforces_the_scope_the_definitions_give_each_operation_it_serves():
    for method, path, scope in fake_ghl.OPERATION_SCOPES:
        assert operation(method, path)["scopes"] == [scope], (method, path)
    assert set(fake_ghl.ALL_SCOPES.split()) == set(DEFAULT_SCOPES.split())


def test_the_contract_lists_exactly_the_operations_the_bridge_calls():
    listed = [(op["method"], op["path"]) for op in contract()["operations"]]
    assert listed == CALLS


# Against the full copy of GHL's definitions ------------------------------------------------
needs_definitions = pytest.mark.skipif(
    not (DEFINITIONS / "apps").is_dir(), reason=f"no copy of GHL's definitions at {DEFINITIONS}"
)


@needs_definitions
def test_the_extracted_contract_is_what_ghls_full_definitions_say():
    assert CONTRACT.read_text(encoding="utf-8") == render(build_contract(DEFINITIONS)), (
        "regenerate it: .venv/bin/python -m scripts.extract_ghl_contract"
    )


@needs_definitions
@pytest.mark.parametrize("call", CLIENT_CALLS.values(), ids=CLIENT_CALLS.keys())
async def test_each_request_validates_against_the_full_definitions_too(call: Call):
    full = build_contract(DEFINITIONS)
    (request,) = await _sent(call)
    assert request_errors(recorded_from(request), full) == []
