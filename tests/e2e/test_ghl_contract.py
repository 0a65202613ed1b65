"""Every request the bridge sends to GHL, captured by the fake GHL, validated against GHL's API
definitions (tests/contract/), and the fake's answers against the definitions' shapes; a scope
the grant lacks fails as GHL would make it fail (issue 27)."""

from typing import Any

from app.devkit.harness import LOCATION, Harness, webhook
from app.ghl.scopes import DEFAULT_SCOPES
from tests.contract.validator import answer_errors, operation, request_errors
from tests.e2e.test_inbound import SENDER, SENDER_E164, post_sms, sms, wait_record
from tests.e2e.test_oauth import install_agency
from tests.e2e.test_optouts import started


def contract_errors(requests: list[dict[str, Any]]) -> list[str]:
    return [e for r in requests for e in request_errors(r) + answer_errors(r)]


def operations(requests: list[dict[str, Any]]) -> set[str]:
    ops = (operation(r["method"], r["path"]) for r in requests)
    return {f"{op['method']} {op['path']}" for op in ops}


async def test_every_request_of_the_main_flows_validates_against_ghls_definitions(
    harness: Harness,
):
    h = await started(harness)
    await h.post(webhook("m-1", phone=SENDER))
    await h.wait_for(lambda: h.statuses_for("m-1"), what="the status of m-1")
    for n, text in enumerate(["hello", "see you at 3", "STOP"]):
        assert (await post_sms(h, sms(f"gw-{n}", message=text))).status_code == 202
        await wait_record(h, f"gw:gw-{n}", "delivered")
    await h.wait_for(lambda: h.ghl.sms_dnd(LOCATION, SENDER_E164) == "active", what="SMS DND")
    h.ghl.installed["co-1"] = ["loc-a"]
    assert (await install_agency(h, approved=["loc-a"])).status_code == 200

    assert contract_errors(h.ghl.requests) == []
    assert operations(h.ghl.requests) == {
        "POST /oauth/token",
        "GET /oauth/installedLocations",
        "POST /oauth/locationToken",
        "PUT /conversations/messages/{messageId}/status",
        "GET /contacts/search/duplicate",
        "POST /contacts/upsert",
        "GET /conversations/search",
        "POST /conversations/",
        "POST /conversations/messages/inbound",
        "GET /contacts/{contactId}",
        "PUT /contacts/{contactId}",
    }


async def test_replies_of_one_contact_name_one_conversation_found_once(harness: Harness):
    h = await started(harness)
    for n in range(3):
        await post_sms(h, sms(f"gw-{n}", message=f"reply {n}"))
        await wait_record(h, f"gw:gw-{n}", "delivered")

    conversations = {entry["body"]["conversationId"] for entry in h.ghl.inbound}
    assert len(conversations) == 1 and conversations <= set(h.ghl.conversations)
    assert len(h.ghl.calls_to("GET", "/conversations/search")) == 1
    assert len(h.ghl.calls_to("POST", "/conversations/")) == 1


async def test_a_scope_the_grant_lacks_fails_the_call_as_ghl_would(harness: Harness):
    harness.ghl.granted_scopes = DEFAULT_SCOPES.replace("conversations/message.write", "")
    h = await started(harness)
    await h.post(webhook("m-1", phone=SENDER))

    await h.wait_for(lambda: h.ghl.calls_to("PUT", "/conversations/messages/m-1/status"))
    (refused, *_) = h.ghl.calls_to("PUT", "/conversations/messages/m-1/status")
    assert refused["status"] == 401
    assert refused["answer"]["message"] == "The token is not authorized for this scope."
    assert h.statuses_for("m-1") == []
