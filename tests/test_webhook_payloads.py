"""Parsing a webhook body: a refused payload is counted under the endpoint's counter and still
answered as refused."""

import pytest

from app.ghl.schemas import ProviderOutboundMessage
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
