"""Raw ASGI endpoints for the hot routes (GHL's Delivery URL), served ahead of FastAPI.

A burst of GHL webhooks is this service's peak load, and most of a webhook's CPU went to the
framework rather than to the work (docs/performance.md): routing through every route, dependency
solving, request/response objects, then a dozen middleware layers (FastAPI's own among them),
each wrapping `send`. A `RawEndpoint` reads the body itself and answers JSON with two `send`
calls. `BridgeApp` serves a hot route's requests that declare a `Content-Length` within the limit
in one frame (`HotRoutes.serve`: request id, the endpoint, the HTTP metrics) before FastAPI sees
them; any other request for it (a chunked or oversized body) takes the full stack, where
`DirectRoutes` hands it to the same endpoint after the body limit. The route stays registered in
the app as well (so other methods get FastAPI's 405), and the error contract is the same: an
`ApiError` or `StoreUnavailable` gets the answer FastAPI's handlers give (app/errors.py), and
anything else a JSON 500.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.body_limit import declared_length
from app.composition import Services
from app.deps import SERVICES_STATE
from app.errors import ApiError, error_response, refusal, store_unavailable
from app.logs import new_request_id, request_id_var
from app.metrics.http import HttpMetrics
from app.store import StoreUnavailable

log = logging.getLogger("app.http")

_JSON_HEADER = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class RawRequest:
    scope: Scope
    body: bytes

    @property
    def services(self) -> Services:
        return self.scope["state"][SERVICES_STATE]

    def header(self, name: bytes) -> str | None:
        """The first value of a header (`name` in lower case), as Starlette decodes it."""
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None


type Handler = Callable[[RawRequest], Awaitable[tuple[int, dict[str, Any]]]]


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


# Starlette's JSONResponse's settings, in an encoder built once (json.dumps builds one a call).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def json_body(content: dict[str, Any]) -> bytes:
    """Encoded as Starlette's JSONResponse encodes it."""
    return _JSON.encode(content).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def of(cls, response: Response) -> "Answer":
        return cls(response.status_code, response.raw_headers, bytes(response.body))

    async def send_to(self, send: Send, *extra: tuple[bytes, bytes]) -> None:
        headers = [*self.headers, *extra] if extra else self.headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class RawEndpoint:
    """An ASGI app answering `handler(request) -> (status, JSON object)`; an ApiError or a
    StoreUnavailable answers as FastAPI's exception handlers do."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def answer(self, scope: Scope, body: bytes) -> Answer:
        try:
            status, content = await self._handler(RawRequest(scope, body))
        except ApiError as exc:
            return Answer.of(refusal(scope["path"], exc))
        except StoreUnavailable:
            return Answer.of(store_unavailable(scope["path"]))
        encoded = json_body(content)
        return Answer(
            status, [(b"content-length", str(len(encoded)).encode()), _JSON_HEADER], encoded
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is not None:
            await (await self.answer(scope, body)).send_to(send)


_INTERNAL_ERROR = Answer.of(
    error_response(500, "internal_error", "the request could not be handled; it was logged")
)


class HotRoutes:
    """`RawEndpoint` routes served in one frame: the request id (as `RequestIdMiddleware` tags
    it), the endpoint, the HTTP metrics (as `HttpMetricsMiddleware` counts them). Only requests
    whose declared `Content-Length` is within `max_body_bytes`: nothing to count or refuse."""

    def __init__(self, routes: Sequence[Route], metrics: HttpMetrics, max_body_bytes: int) -> None:
        self._routes: dict[tuple[str, str], tuple[str, RawEndpoint]] = {}
        for route in routes:
            assert isinstance(route.endpoint, RawEndpoint), route.path
            for method in route.methods or ():
                self._routes[(method, route.path)] = (route.path, route.endpoint)
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    def match(self, scope: Scope) -> tuple[str, RawEndpoint] | None:
        if scope["type"] != "http":
            return None
        hot = self._routes.get((scope["method"], scope["path"]))
        if hot is None:
            return None
        declared = declared_length(scope)
        return hot if declared is not None and declared <= self._max_body_bytes else None

    async def serve(
        self, hot: tuple[str, RawEndpoint], scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        template, endpoint = hot
        request_id = new_request_id()
        token = request_id_var.set(request_id)
        status = 500  # unless an answer goes out
        try:
            body = await read_body(receive)
            if body is None:
                return
            try:
                answer = await endpoint.answer(scope, body)
            except Exception:
                log.exception("unhandled error", extra={"path": scope["path"]})
                answer = _INTERNAL_ERROR
            status = answer.status
            await answer.send_to(send, (b"x-request-id", request_id.encode()))
        finally:
            request_id_var.reset(token)
            self._metrics.observe(template, scope["method"], status, time.perf_counter() - started)


class BridgeApp(FastAPI):
    """The FastAPI app, with `hot` routes served before its middleware stack."""

    hot: HotRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and (hot := self.hot.match(scope)) is not None:
            await self.hot.serve(hot, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class DirectRoutes:
    """Middleware: requests for one of `routes`' exact methods and paths go straight to the
    route's ASGI app (with `scope["route"]` set, as the router would); all others go on."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        self._direct = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self._direct.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        await route.app(scope, receive, send)
