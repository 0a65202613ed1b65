"""One JSON error shape for every 4xx/5xx: {"error": {"code", "message", "field"?}}."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.kit.logs import mask_phones_in
from app.store import StoreUnavailable

log = logging.getLogger("app.http")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def validation_error(exc: ValidationError | RequestValidationError) -> ApiError:
    """The first problem, naming the field the way the client spelled it."""
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"] if part not in ("body", "query", "header")]
    field = ".".join(location) or None
    text = mask_phones_in(first["msg"]) or ""  # a validator's words never carry a number
    message = text if field is None else f"{field}: {text}"
    return ApiError(422, "invalid_payload", message, field)


def refusal(path: str, exc: ApiError) -> JSONResponse:
    """The logged 4xx/5xx answer to an ApiError (FastAPI's handler and the raw ASGI routes)."""
    log.warning(
        "request refused",
        extra={"path": path, "status": exc.status, "code": exc.code, "reason": exc.message},
    )
    return error_response(exc.status, exc.code, exc.message, exc.field)


def store_unavailable(path: str) -> JSONResponse:
    """Nothing was stored: 503 so the sender (GHL, the gateway) retries later."""
    log.error("store unavailable during a request", extra={"path": path})
    response = error_response(
        503, "store_unavailable", "the database is unavailable; nothing was stored, retry later"
    )
    response.headers["Retry-After"] = "5"
    return response


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return refusal(request.url.path, exc)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await _api_error(request, validation_error(exc))


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
    return error_response(exc.status_code, code, str(exc.detail))


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return store_unavailable(request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
