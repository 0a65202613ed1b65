"""GHL's Delivery URL (both paths): verify, store once, acknowledge. Sending happens in the
worker."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServicesDep
from app.ghl.schemas import ProviderOutboundMessage
from app.ghl.webhooks import VerifiedBody, parse_payload, refusals_counted
from app.outbound.service import Accepted

router = APIRouter(tags=["outbound"])

_STATUS_CODES = {Accepted.QUEUED: 202, Accepted.DUPLICATE: 200, Accepted.IGNORED: 200}


@router.post("/webhooks/ghl/outbound", status_code=202)
@router.post("/api/ghl/v1/webhook/messages", status_code=202, include_in_schema=False)  # Go bridge
async def provider_outbound_message(body: VerifiedBody, services: ServicesDep) -> JSONResponse:
    with refusals_counted(services.counters, "webhooks_rejected_payload"):
        payload = parse_payload(ProviderOutboundMessage, body)
    outcome = await services.outbound.accept(payload)
    return JSONResponse(
        {"status": outcome.value, "messageId": payload.message_id},
        status_code=_STATUS_CODES[outcome],
    )
