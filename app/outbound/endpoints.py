"""GHL's Delivery URL (both paths): a raw ASGI endpoint served ahead of FastAPI's routing
(app/asgi.py), since a burst of these webhooks is the service's peak load."""

from starlette.routing import Route

from app.asgi import RawEndpoint, RawRequest
from app.ghl.schemas import ProviderOutboundMessage
from app.ghl.webhooks import parse_payload, refusals_counted, verified_raw_body
from app.outbound.service import Accepted

DELIVERY_PATHS = ("/webhooks/ghl/outbound", "/api/ghl/v1/webhook/messages")  # ours, the Go bridge's

_STATUS_CODES = {Accepted.QUEUED: 202, Accepted.DUPLICATE: 200, Accepted.IGNORED: 200}


async def _provider_outbound_message(request: RawRequest) -> tuple[int, dict[str, str]]:
    """Verify, store once, acknowledge. Sending happens in the worker."""
    body = verified_raw_body(request)
    services = request.services
    with refusals_counted(services.counters, "webhooks_rejected_payload"):
        payload = parse_payload(ProviderOutboundMessage, body)
    outcome = await services.outbound.accept(payload)
    return _STATUS_CODES[outcome], {"status": outcome.value, "messageId": payload.message_id}


provider_outbound_message = RawEndpoint(_provider_outbound_message)
routes = [Route(path, provider_outbound_message, methods=["POST"]) for path in DELIVERY_PATHS]
