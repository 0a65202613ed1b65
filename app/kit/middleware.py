"""Pure-ASGI middleware applied to every route (app/main.py): the request id, and a JSON 500 for
an unexpected error. The HTTP metrics (app/metrics/http.py) and the body limit
(app/kit/body_limit.py) are the other two."""

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.errors import error_response
from app.kit.logs import new_request_id, request_id_var

log = logging.getLogger("app.http")


class RequestIdMiddleware:
    """Tag every request (and its log lines) with an id; echo it as X-Request-ID."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class UnhandledErrorMiddleware:
    """An exception no handler took: logged (with the request id), answered as the error
    contract's JSON 500 unless an answer had already begun."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"]})
            if started:
                raise
            answer = error_response(
                500, "internal_error", "the request could not be handled; it was logged"
            )
            await answer(scope, receive, send)
