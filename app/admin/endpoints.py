"""`/api/admin/...`: the operator's HTTP API, behind its own bearer key (ADMIN_API_KEY).

Unset ADMIN_API_KEY → the admin API is off: every admin route answers 404 `admin_disabled`.
The inbound gateway's key (INBOUND_API_KEY) never works here, and the settings refuse an
ADMIN_API_KEY equal to it.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from app.admin.schemas import (
    CastRates,
    LiftOptOutBody,
    MessageView,
    OptOutList,
    RerouteBody,
    SenderIdBody,
    SenderIdResult,
)
from app.admin.service import AdminService
from app.deps import ServicesDep
from app.ghl.webhooks import parse_payload
from app.kit.bearer import require_bearer
from app.kit.errors import ApiError
from app.messages.schemas import MessagePage
from app.messages.service import message_query
from app.optouts.schemas import OptOutView
from app.overview.schemas import LocationsOverview


async def admin_service(request: Request, services: ServicesDep) -> AdminService:
    """The admin service, once the request's bearer token is ADMIN_API_KEY (constant-time)."""
    key = services.settings.admin_api_key
    if key is None:
        raise ApiError(404, "admin_disabled", "the admin API is off: set ADMIN_API_KEY")
    require_bearer(request, key, "invalid_admin_key", "admin API")
    return services.admin


AdminDep = Annotated[AdminService, Depends(admin_service)]


async def admin_body(request: Request, admin: AdminDep) -> bytes:
    """The raw body, read only once the key matched: nothing is parsed for an unknown caller."""
    return await request.body()


AdminBody = Annotated[bytes, Depends(admin_body)]

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/installations")
async def list_installations(admin: AdminDep) -> dict[str, Any]:
    """Every installation (location and agency), without tokens."""
    rows = await admin.installations()
    return {"installations": [row.model_dump() for row in rows]}


@router.get("/cast-rates")
async def cast_rates(admin: AdminDep) -> CastRates:
    """Each Cast key's current send rate, for the whole cluster (a key that drew a 429 is
    slowed down, then recovers); keys not listed send at CAST_RATE_PER_KEY."""
    return await admin.cast_rates()


@router.get("/refused-messages")
async def list_refused_messages(admin: AdminDep) -> dict[str, Any]:
    """Messages GHL sent for a location without an installation: never sent, and no token of
    the location or its agency could report them `failed` to GHL."""
    rows = await admin.refused_messages()
    return {"messages": [row.model_dump() for row in rows]}


def _wants_csv(request: Request) -> bool:
    """`format=csv`, or `Accept: text/csv` (without `format=json`); any other format is a 400."""
    chosen = request.query_params.get("format")
    if chosen not in (None, "csv", "json"):
        raise ApiError(400, "invalid_query", "format: csv or json", "format")
    if chosen is not None:
        return chosen == "csv"
    return "text/csv" in request.headers.get("accept", "")


async def _starting_with(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for chunk in rest:
        yield chunk


@router.get("/messages", response_model=MessagePage)
async def list_messages(request: Request, admin: AdminDep) -> Response | MessagePage:
    """The message log: outbound and inbound, filtered, newest first, paged by `cursor`; the
    whole selection as CSV with `Accept: text/csv` or `format=csv`."""
    params = {k: v for k, v in request.query_params.items() if k != "format"}
    as_csv = _wants_csv(request)
    query = message_query(params)
    if as_csv:
        chunks = admin.export_messages(query)
        first = await anext(chunks)  # the first read fails before any byte: a JSON error
        return StreamingResponse(
            _starting_with(first, chunks),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="messages.csv"'},
        )
    return await admin.messages(query)


@router.get("/messages/{message_id}")
async def show_message(message_id: str, admin: AdminDep) -> MessageView:
    """An outbound message by GHL messageId: where it is, what happened (its history)."""
    return await admin.message(message_id)


@router.post("/messages/{message_id}/requeue", status_code=202)
async def requeue_message(message_id: str, admin: AdminDep) -> MessageView:
    """Send a failed message again; 409 when it was delivered or is still in progress."""
    return await admin.requeue(message_id)


@router.get("/inbound/unroutable")
async def list_unroutable(admin: AdminDep) -> dict[str, Any]:
    rows = await admin.unroutable()
    return {"messages": [row.model_dump(by_alias=True) for row in rows]}


@router.post("/inbound/{inbound_id:path}/reroute", status_code=202)
async def reroute_inbound(inbound_id: str, raw: AdminBody, admin: AdminDep) -> dict[str, str]:
    """Deliver an unroutable (or failed) inbound SMS to the given location."""
    body = parse_payload(RerouteBody, raw)
    await admin.reroute(inbound_id, body.location_id)
    return {"status": "queued", "id": inbound_id, "location_id": body.location_id}


@router.post("/inbound/{inbound_id:path}/discard")
async def discard_inbound(inbound_id: str, admin: AdminDep) -> dict[str, str]:
    """Take an unroutable inbound SMS off the list without delivering it."""
    await admin.discard(inbound_id)
    return {"status": "discarded", "id": inbound_id}


@router.get("/locations")
async def list_locations(admin: AdminDep, company_id: str | None = None) -> LocationsOverview:
    """Every sub-account (of one agency with `company_id`): name, installed or needing a
    re-install, sender and channel, own key or the default, messages and delivery rate over
    24 h and 7 d, opted-out count, credits of its own key."""
    return await admin.locations(company_id or None)


@router.put("/locations/{location_id}/sender-id")
async def set_sender_id(location_id: str, raw: AdminBody, admin: AdminDep) -> SenderIdResult:
    """The deployed Go bridge's call, same path and body, now under ADMIN_API_KEY."""
    body = parse_payload(SenderIdBody, raw)
    return await admin.set_sender_id(location_id, body.sender_id, body.channel)


@router.delete("/locations/{location_id}/sender-ids/{sender_id}")
async def unassign_sender_id(location_id: str, sender_id: str, admin: AdminDep) -> SenderIdResult:
    """Take one assigned default-account sender from the location; its others stay."""
    return await admin.unassign_sender_id(location_id, sender_id)


@router.get("/locations/{location_id}/optouts")
async def list_optouts(location_id: str, admin: AdminDep) -> OptOutList:
    """The numbers this location does not text (replied STOP, Cast's unsubscribe link)."""
    return await admin.optouts(location_id)


@router.post("/locations/{location_id}/optouts/{number}/lift")
async def lift_optout(location_id: str, number: str, raw: AdminBody, admin: AdminDep) -> OptOutView:
    """Take a number (any PH format, or the listed `id`) off the list; the reason is logged."""
    body = parse_payload(LiftOptOutBody, raw)
    return await admin.lift_optout(location_id, number, body.reason, "admin")
