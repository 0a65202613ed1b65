from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from app.deps import ServicesDep
from app.ghl.client import GHLError
from app.ghl.webhooks import VerifiedBody, parse_payload, refusals_counted
from app.kit.errors import ApiError
from app.oauth import pages
from app.oauth.schemas import AppWebhook
from app.oauth.service import InstallError

router = APIRouter(tags=["oauth"])

# The callback URL carries the one-time code: keep it out of caches and Referer headers.
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.get("/oauth/install", status_code=302)
@router.get("/install", status_code=302, include_in_schema=False)
async def install(services: ServicesDep) -> RedirectResponse:
    """Start an installation: redirect to GHL's location chooser with a signed state."""
    return RedirectResponse(services.oauth.install_url(), status_code=302, headers=_PAGE_HEADERS)


@router.get("/oauth/callback", response_class=HTMLResponse)
@router.get("/oauth-callback", response_class=HTMLResponse, include_in_schema=False)
async def callback(
    services: ServicesDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    """GHL's redirect after the user approved: exchange the code, store the tokens."""
    try:
        result = await services.oauth.complete_install(code, state, error)
    except InstallError as exc:
        return HTMLResponse(
            pages.error_page(exc.title, exc.message), status_code=exc.status, headers=_PAGE_HEADERS
        )
    return HTMLResponse(pages.connected_page(result), headers=_PAGE_HEADERS)


@router.post("/webhooks/ghl/app")
async def app_webhook(body: VerifiedBody, services: ServicesDep) -> JSONResponse:
    """The app's Webhook URL (signed like the Delivery URL): INSTALL, UNINSTALL and
    ContactDndUpdate are acted on; any other event is answered 200 `ignored`."""
    with refusals_counted(services.counters, "webhooks_rejected_payload"):
        event = parse_payload(AppWebhook, body)
    try:
        outcome = await services.oauth.handle_app_webhook(event, body)
    except GHLError as exc:
        raise ApiError(502, "ghl_unavailable", f"GHL did not answer as expected: {exc}") from exc
    return JSONResponse(outcome)
