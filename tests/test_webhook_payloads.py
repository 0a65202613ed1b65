"""Parsing a webhook body: a refused payload is counted under the endpoint's counter and still
answered as refused; GHL's payloads in the shapes GHL sends them."""

import json

import pytest

from app.ghl.schemas import ContactDndUpdate, ProviderOutboundMessage
from app.ghl.webhooks import parse_payload, refusals_counted
from app.kit.errors import ApiError
from app.metrics import Counters

GOOD = b'{"messageId": "m1", "locationId": "l1", "phone": "+639171234567", "message": "hi"}'


def test_a_refused_payload_is_counted_and_still_refused():
    counters = Counters()
    counting = refusals_counted(counters, "webhooks_rejected_payload")
    with pytest.raises(ApiError) as refused, counting:
        parse_payload(ProviderOutboundMessage, b'{"messageId": "m1"}')

    assert refused.value.status == 422
    assert counters.get("webhooks_rejected_payload") == 1


def test_an_accepted_payload_is_not_counted():
    counters = Counters()
    with refusals_counted(counters, "webhooks_rejected_payload"):
        payload = parse_payload(ProviderOutboundMessage, GOOD)

    assert payload.message_id == "m1"
    assert counters.get("webhooks_rejected_payload") == 0


def test_an_error_other_than_a_refusal_is_not_counted():
    counters = Counters()
    counting = refusals_counted(counters, "webhooks_rejected_payload")
    with pytest.raises(RuntimeError), counting:
        raise RuntimeError("a bug, not a bad payload")

    assert counters.get("webhooks_rejected_payload") == 0


# ProviderOutboundMessage in every shape GHL may send ------------------------------------------
def outbound(**fields: object) -> ProviderOutboundMessage:
    body = {"messageId": "m1", "locationId": "l1", "phone": "+639171234567", **fields}
    return parse_payload(ProviderOutboundMessage, json.dumps(body).encode())


def test_a_message_without_text_is_accepted_with_empty_text():
    assert outbound(attachments=["https://x.test/a.png"]).message == ""


def test_attachments_null_are_none():
    assert outbound(message="hi", attachments=None).attachments == []


def test_an_attachment_object_gives_its_url_and_one_without_a_link_is_dropped():
    attachments = [{"url": " https://x.test/a.png ", "type": "image/png"}, {"type": "x"}, ""]

    assert outbound(message="hi", attachments=attachments).attachments == ["https://x.test/a.png"]


def test_attachments_that_are_not_a_list_are_a_422_naming_them():
    with pytest.raises(ApiError) as refused:
        outbound(message="hi", attachments="https://x.test/a.png")

    assert (refused.value.status, refused.value.field) == (422, "attachments")


def test_an_email_without_phone_or_message_is_accepted():
    email = {"messageId": "m1", "locationId": "l1", "type": "Email", "html": "<p>hi</p>"}

    assert parse_payload(ProviderOutboundMessage, json.dumps(email).encode()).type == "Email"


# ContactDndUpdate -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "blocked"), [("active", True), ("permanent", True), ("inactive", False)]
)
def test_the_sms_entry_says_whether_sms_is_blocked(status: str, blocked: bool):
    update = ContactDndUpdate.model_validate(
        {"locationId": "l1", "dnd": not blocked, "dndSettings": {"SMS": {"status": status}}}
    )

    assert update.sms_blocked is blocked


def test_without_an_sms_entry_the_contact_wide_dnd_decides():
    update = ContactDndUpdate.model_validate({"locationId": "l1", "dnd": True, "dndSettings": {}})

    assert update.sms_blocked is True


def test_an_update_saying_nothing_of_dnd_blocks_nothing_and_clears_nothing():
    assert ContactDndUpdate.model_validate({"locationId": "l1"}).sms_blocked is None
