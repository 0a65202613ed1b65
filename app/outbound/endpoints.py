from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import OutboundServiceDep, ResourcesDep
from app.errors import ApiError
from app.ghl.schemas import ProviderOutboundMessage
from app.ghl.webhooks import VerifiedBody, parse_payload
from app.outbound.service import Accepted

router = APIRouter(tags=["outbound"])

_STATUS_CODES = {Accepted.QUEUED: 202, Accepted.DUPLICATE: 200, Accepted.IGNORED: 200}


@router.post("/webhooks/ghl/outbound", status_code=202)
@router.post("/api/ghl/v1/webhook/messages", status_code=202, include_in_schema=False)
async def provider_outbound_message(
    body: VerifiedBody, service: OutboundServiceDep, resources: ResourcesDep
) -> JSONResponse:
    """GHL's Delivery URL: verify, store once, acknowledge. Sending happens in the worker."""
    try:
        payload = parse_payload(ProviderOutboundMessage, body)
    except ApiError:
        resources.counters.inc("webhooks_rejected_payload")
        raise
    outcome = await service.accept(payload)
    return JSONResponse(
        {"status": outcome.value, "messageId": payload.message_id},
        status_code=_STATUS_CODES[outcome],
    )
