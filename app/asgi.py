"""Raw ASGI endpoints for the hot routes (GHL's Delivery URL), served ahead of FastAPI's routing.

A burst of GHL webhooks is this service's peak load, and most of a webhook's CPU went to the
framework rather than to the work (docs/performance.md): routing through every route, dependency
solving, request/response objects. A `RawEndpoint` reads the body itself and answers JSON with
two `send` calls; `DirectRoutes` hands it the requests for its exact method and path before
FastAPI routes anything. The route stays registered in the app as well (so other methods get
FastAPI's 405 and the HTTP metrics see the route template), and the error contract is the same:
an `ApiError` or `StoreUnavailable` gets the answer FastAPI's handlers give (app/errors.py).
"""

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.composition import Services
from app.deps import SERVICES_STATE
from app.errors import ApiError, refusal, store_unavailable
from app.store import StoreUnavailable

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


def json_body(content: dict[str, Any]) -> bytes:
    """Encoded as Starlette's JSONResponse encodes it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class RawEndpoint:
    """An ASGI app answering `handler(request) -> (status, JSON object)`; an ApiError or a
    StoreUnavailable answers as FastAPI's exception handlers do."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is None:
            return
        try:
            status, content = await self._handler(RawRequest(scope, body))
        except ApiError as exc:
            await refusal(scope["path"], exc)(scope, receive, send)
            return
        except StoreUnavailable:
            await store_unavailable(scope["path"])(scope, receive, send)
            return
        encoded = json_body(content)
        headers = [(b"content-length", str(len(encoded)).encode()), _JSON_HEADER]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})


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
