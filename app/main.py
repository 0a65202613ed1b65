"""The application factory. The lifespan opens the store and the HTTP clients, builds the services
(app/composition.py), runs the workers, and on shutdown stops them and closes everything."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.admin.endpoints import router as admin_router
from app.composition import Services, build_services
from app.config import Settings, load_settings
from app.deps import SERVICES_STATE
from app.health.endpoints import router as health_router
from app.inbound.endpoints import router as inbound_router
from app.kit.body_limit import BodyLimitMiddleware
from app.kit.errors import install_error_handlers
from app.kit.middleware import RequestIdMiddleware, UnhandledErrorMiddleware
from app.locations.endpoints import router as locations_router
from app.metrics.endpoints import router as metrics_router
from app.metrics.http import instrument_http
from app.oauth.endpoints import router as oauth_router
from app.outbound.endpoints import router as outbound_router
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    docs = settings.api_docs  # /docs, /redoc, /openapi.json list the admin API: off by default
    app = FastAPI(
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
    app.include_router(outbound_router)
    app.include_router(locations_router)
    app.include_router(inbound_router)
    app.include_router(oauth_router)
    app.include_router(admin_router)
    app.include_router(agency_router)
    app.include_router(metrics_router)
    # Middleware added last runs first: the request id, a JSON 500 for an unexpected error, the
    # HTTP metrics, then the body limit, on every route.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.http_metrics_registry = instrument_http(app).registry
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
