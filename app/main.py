"""The application factory. The lifespan opens the store and the HTTP clients, builds the services
(app/composition.py), runs the workers, and on shutdown stops them and closes everything."""

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.admin.endpoints import router as admin_router
from app.asgi import BridgeApp, DirectRoutes, HotRoutes
from app.body_limit import BodyLimitMiddleware
from app.composition import Services, build_services
from app.config import Settings, load_settings
from app.deps import SERVICES_STATE
from app.errors import install_error_handlers
from app.health.endpoints import router as health_router
from app.inbound.endpoints import router as inbound_router
from app.locations.endpoints import router as locations_router
from app.logs import new_request_id, request_id_var
from app.metrics.endpoints import router as metrics_router
from app.metrics.http import instrument_http
from app.oauth.endpoints import router as oauth_router
from app.outbound.endpoints import routes as outbound_routes
from app.overview.endpoints import router as agency_router
from app.store import Store, StoreUnavailable, build_store

log = logging.getLogger("app")

USER_AGENT = "cast-ghl-provider/0.1"
STORE_START_TIMEOUT_SECONDS = 60.0


def _http_client(base_url: str, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
        headers={"User-Agent": USER_AGENT},
    )


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


async def _open_store(store: Store) -> None:
    """Wait for a database that is still starting (compose, a failover) instead of dying."""
    deadline = time.monotonic() + STORE_START_TIMEOUT_SECONDS
    while True:
        try:
            await store.start()
            return
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("store not reachable yet; retrying", extra={"reason": str(exc)})
            await asyncio.sleep(1.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Services]]:
    settings: Settings = app.state.settings
    store = build_store(settings)
    await _open_store(store)
    log.info("store opened", extra={"backend": store.backend})
    cast_http = _http_client(str(settings.cast_api_url), settings.cast_api_timeout_seconds)
    ghl_http = _http_client(str(settings.ghl_api_url), settings.ghl_api_timeout_seconds)
    services = build_services(settings, store, cast_http, ghl_http, app.state.http_metrics_registry)
    services.workers.start()
    # Everything built so far lives as long as the process: move it out of the garbage
    # collector's sight, so a full collection scans only what requests create (measured:
    # gen-2 pauses of 50-100 ms under load became ~3 ms; see docs/performance.md).
    gc.freeze()
    services.readiness.started = True
    log.info("bridge started", extra={"store": store.backend, "port": settings.port})
    try:
        yield {SERVICES_STATE: services}
    finally:
        services.readiness.started = False
        log.info("shutting down: releasing in-flight work")
        await services.workers.stop(settings.shutdown_timeout_seconds)
        await cast_http.aclose()
        await ghl_http.aclose()
        await store.close()
        log.info("shutdown complete", extra={"counters": services.counters.snapshot()})


def create_app(settings: Settings | None = None) -> BridgeApp:
    settings = settings or load_settings()
    docs = settings.api_docs  # /docs, /redoc, /openapi.json list the admin API: off by default
    app = BridgeApp(
        title="Cast SMS for GoHighLevel",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health_router)
    app.router.routes.extend(outbound_routes)
    app.include_router(locations_router)
    app.include_router(inbound_router)
    app.include_router(oauth_router)
    app.include_router(admin_router)
    app.include_router(agency_router)
    app.include_router(metrics_router)
    # Middleware added last runs first: request id, HTTP metrics, the body limit, then the raw
    # webhook routes (ahead of FastAPI's routing). A webhook within the body limit skips all of
    # that: `app.hot` serves it first, tagged and counted the same way.
    app.add_middleware(DirectRoutes, routes=outbound_routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    http_metrics = instrument_http(app)
    app.state.http_metrics_registry = http_metrics.registry
    app.add_middleware(RequestIdMiddleware)
    app.hot = HotRoutes(outbound_routes, http_metrics, settings.max_body_bytes)
    return app
