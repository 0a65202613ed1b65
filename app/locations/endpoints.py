"""The settings page inside GHL (a Marketplace custom page): HTTP in, HTML out.

GET /settings serves a small page that asks GHL's parent window for the encrypted user context
and posts it to POST /settings/sso. Every later form carries the signed session it gets back.
Errors answer HTML with the right status, or the usual JSON error body for a client that asks
for JSON (`Accept: application/json`).
"""

from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from app.deps import ServicesDep
from app.kit.errors import ApiError, validation_error
from app.locations.pages import STATIC_DIR, STATIC_FILES, new_nonce, render
from app.locations.schemas import SettingsForm, SmsTestForm
from app.locations.service import LOG_FILTERS, LocationService
from app.locations.sso import Session

router = APIRouter(prefix="/settings", tags=["settings"], include_in_schema=False)

MAX_FORM_BYTES = 32_768
_LABELS = {
    "sender_id": "Sender ID",
    "channel": "Sender kind",
    "low_credit_threshold": "Low-credit warning",
    "api_key": "Cast API key",
    "phone": "Mobile number",
}
_TITLES = {
    401: "Not signed in",
    403: "Not allowed",
    413: "Too large",
    415: "Not a form",
    429: "Too many test messages",
    503: "Not configured",
}
_CODE_TITLES = {
    "not_installed": "Cast SMS is not installed",
    "too_many_views": "Opened too often",
}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, "too_large", "The form is too large")
    if not body:
        return {}
    if content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "Send the form as urlencoded fields")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "malformed_form", "The form could not be read") from exc
    return dict(pairs)


def _parse[M: BaseModel](model: type[M], fields: dict[str, object]) -> M:
    """Validate a form; the first problem as a 422 naming the field, in words for the page."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = validation_error(exc)
        if error.field in _LABELS:
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            error.message = f"{_LABELS[error.field]}: {reason}"
        raise error from exc


async def _page(
    service: LocationService,
    session: Session,
    token: str,
    *,
    status_code: int = 200,
    notice: str | None = None,
    error: ApiError | None = None,
    values: dict[str, str] | None = None,
    search: Mapping[str, str] | None = None,
) -> HTMLResponse:
    view = await service.view(session)
    search = search or {}
    try:
        log = await service.message_log(session, search)
    except ApiError as exc:  # a bad search: the first page, the form as typed, the problem
        if error is not None:
            raise
        status_code, error = exc.status, exc
        log = await service.message_log(session, {})
    return render(
        "settings.html",
        status_code,
        service.frame_origins,
        view=view,
        session=token,
        nonce=new_nonce(),
        notice=notice,
        error=error,
        values=values or {},
        log=log,
        search={name: search.get(f"log_{name}", "") for name in LOG_FILTERS},
    )


def _error_page(request: Request, service: LocationService, exc: ApiError) -> Response:
    if _wants_json(request):
        raise exc
    title = _CODE_TITLES.get(exc.code) or _TITLES.get(exc.status, "Something went wrong")
    return render("error.html", exc.status, service.frame_origins, title=title, error=exc)


async def _with_session(
    request: Request,
    service: LocationService,
    action: Callable[[Session, str, dict[str, str]], Awaitable[Response]],
) -> Response:
    """Read the form, check its session, run `action`; errors become pages."""
    try:
        form = await _form(request)
        token = form.get("session", "")
        session = await service.session(token)
    except ApiError as exc:
        return _error_page(request, service, exc)
    return await action(session, token, form)


@router.get("", response_class=HTMLResponse)
async def settings_shell(services: ServicesDep) -> Response:
    """The page GHL embeds: it asks GHL for the user context, then signs in."""
    service = services.locations
    return render(
        "shell.html",
        200 if service.enabled else 503,
        service.frame_origins,
        configured=service.enabled,
    )


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise ApiError(404, "not_found", "No such file")
    return Response(
        (STATIC_DIR / name).read_bytes(),
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/sso", response_class=HTMLResponse)
async def sign_in(request: Request, services: ServicesDep) -> Response:
    service = services.locations
    try:
        form = await _form(request)
        session, token = await service.sign_in(form.get("payload"))
        await service.count_view(session)
    except ApiError as exc:
        return _error_page(request, service, exc)
    return await _page(service, session, token)


@router.post("/view", response_class=HTMLResponse)
async def refresh(request: Request, services: ServicesDep) -> Response:
    return await _viewed(request, services.locations, searched=False)


@router.post("/messages", response_class=HTMLResponse)
async def search_messages(request: Request, services: ServicesDep) -> Response:
    """The page's message log, searched (this location's messages only) and paged."""
    return await _viewed(request, services.locations, searched=True)


async def _viewed(request: Request, service: LocationService, *, searched: bool) -> Response:
    """The page again for a signed-in session (a view counted against the location's limit),
    with the form's `log_*` search fields when `searched`."""

    async def action(session: Session, token: str, form: dict[str, str]) -> Response:
        try:
            await service.count_view(session)
        except ApiError as exc:
            return _error_page(request, service, exc)
        search = {name: value for name, value in form.items() if name.startswith("log_")}
        return await _page(service, session, token, search=search if searched else None)

    return await _with_session(request, service, action)


@router.post("/save", response_class=HTMLResponse)
async def save(request: Request, services: ServicesDep) -> Response:
    service = services.locations

    async def action(session: Session, token: str, form: dict[str, str]) -> Response:
        fields = {
            "sender_id": form.get("sender_id"),
            "channel": form.get("channel"),
            "low_credit_threshold": form.get("low_credit_threshold"),
            "api_key": form.get("api_key"),
            "enabled": "enabled" in form,
            "remove_api_key": "remove_api_key" in form,
        }
        try:
            updated, check = await service.save(session, _parse(SettingsForm, fields))
        except ApiError as exc:
            if _wants_json(request):
                raise
            values = {
                name: form.get(name, "")
                for name in ("sender_id", "channel", "low_credit_threshold")
            }
            return await _page(
                service, session, token, status_code=exc.status, error=exc, values=values
            )
        sender = updated.sender_id or "Cast's default for the account"
        notice = f"Saved. Sender ID: {sender}."
        if check.checked:
            notice += f" Cast approved it for the {check.channel} channel."
        elif check.note and updated.sender_id:
            notice += (
                f" It could not be checked ({check.note}): it is used as typed, and replies to it"
                " reach this sub-account once Cast lists it."
            )
        return await _page(service, session, token, notice=notice)

    return await _with_session(request, service, action)


@router.post("/test-sms", response_class=HTMLResponse)
async def test_sms(request: Request, services: ServicesDep) -> Response:
    service = services.locations

    async def action(session: Session, token: str, form: dict[str, str]) -> Response:
        try:
            parsed = _parse(SmsTestForm, {"phone": form.get("phone"), "nonce": form.get("nonce")})
            queued = await service.send_test(session, parsed)
        except ApiError as exc:
            if _wants_json(request):
                raise
            values = {"phone": form.get("phone", "")}
            return await _page(
                service, session, token, status_code=exc.status, error=exc, values=values
            )
        notice = (
            "Test SMS queued: it appears under Messages."
            if queued
            else "This test SMS was already queued."
        )
        return await _page(service, session, token, notice=notice)

    return await _with_session(request, service, action)
