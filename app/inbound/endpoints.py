"""`POST /webhooks/cast/inbound`: Cast's SIM gateway hands over a received SMS.

The contract is ours (CAST_API_REFERENCE.md §11): `X-API-Key` = INBOUND_API_KEY, JSON
`{from, message, to?, id?, received_at?}`. The key is checked before the body is read.
"""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.deps import ServicesDep
from app.ghl.webhooks import parse_payload, refusals_counted
from app.inbound.schemas import InboundPayload
from app.inbound.service import Accepted
from app.kit.errors import ApiError

router = APIRouter(tags=["inbound"])

API_KEY_HEADER = "X-API-Key"
_STATUS_CODES = {Accepted.QUEUED: 202, Accepted.DUPLICATE: 200}


async def gateway_body(request: Request, services: ServicesDep) -> bytes:
    """The raw body, once the gateway's key matched (constant-time)."""
    configured = services.settings.inbound_api_key
    if configured is None:
        raise ApiError(
            503,
            "inbound_disabled",
            "inbound SMS is not configured on this bridge: set INBOUND_API_KEY",
        )
    given = request.headers.get(API_KEY_HEADER, "")
    if not hmac.compare_digest(given.encode(), configured.get_secret_value().encode()):
        services.counters.inc("inbound_rejected_auth")
        reason = "missing" if not given else "wrong"
        raise ApiError(401, "invalid_api_key", f"{API_KEY_HEADER} header is {reason}")
    return await request.body()


GatewayBody = Annotated[bytes, Depends(gateway_body)]


@router.post("/webhooks/cast/inbound", status_code=202)
async def cast_inbound_sms(body: GatewayBody, services: ServicesDep) -> JSONResponse:
    """Store the SMS once and acknowledge; routing and delivery to GHL happen in the worker."""
    with refusals_counted(services.counters, "inbound_rejected_payload"):
        payload = parse_payload(InboundPayload, body)
        if payload.id is None and payload.received_at is None:
            raise ApiError(
                422,
                "invalid_payload",
                "id: required unless received_at is given (retries are recognised by id, "
                "else by from + message + received_at)",
                "id",
            )
    outcome, inbound_id = await services.inbound.accept(payload)
    return JSONResponse(
        {"status": outcome.value, "id": inbound_id}, status_code=_STATUS_CODES[outcome]
    )
