"""`/agency`: the agency overview inside GHL, a custom page in the agency's menu. GHL SSO (the
same Shared Secret as the settings page); only an agency admin, only that agency's sub-accounts.
"""

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import ServicesDep
from app.kit.errors import ApiError
from app.locations.pages import render

router = APIRouter(prefix="/agency", tags=["agency"], include_in_schema=False)

MAX_FORM_BYTES = 32_768
_TITLES = {
    "not_agency": "Open it from the agency",
    "not_agency_admin": "Not allowed",
    "not_installed": "Cast SMS is not installed",
}


@router.get("")
async def agency_shell(services: ServicesDep) -> Response:
    """The page GHL embeds in the agency's menu: it asks GHL for the user, then signs in."""
    locations = services.locations
    return render(
        "shell.html",
        200 if locations.enabled else 503,
        locations.frame_origins,
        configured=locations.enabled,
        action="/agency/sso",
    )


@router.post("/sso")
async def agency_overview(request: Request, services: ServicesDep) -> Response:
    locations, admin = services.locations, services.admin
    try:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, "too_large", "The form is too large")
        form = dict(parse_qsl(body.decode(errors="replace"), max_num_fields=5))
        user = locations.agency_admin(form.get("payload"))
        assert user.company_id is not None
        overview = await admin.locations(user.company_id)
        if not overview.locations:
            raise ApiError(
                403, "not_installed", "Cast SMS is not installed for any of this agency's accounts"
            )
    except ApiError as exc:
        title = _TITLES.get(exc.code, "Something went wrong")
        return render("error.html", exc.status, locations.frame_origins, title=title, error=exc)
    return render(
        "agency.html",
        200,
        locations.frame_origins,
        overview=overview,
        user_name=user.user_name or user.email or user.user_id,
    )
