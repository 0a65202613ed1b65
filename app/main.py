"""The application factory. Resources are opened in the lifespan and closed on shutdown."""

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
from app.admin.service import AdminService
from app.asgi import DirectRoutes
from app.body_limit import BodyLimitMiddleware
from app.cast.account import CastAccountInfo
from app.cast.client import CastClient
from app.cast.pacing import CastPacer
from app.cast.repository import KeyStates
from app.cast.senders import SenderDirectory
from app.config import Settings, load_settings
from app.deps import Resources
from app.errors import install_error_handlers
from app.ghl.client import GHLClient
from app.ghl.pacing import GHLPacer
from app.ghl.signature import load_webhook_keys
from app.health.endpoints import router as health_router
from app.inbound.endpoints import router as inbound_router
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, routing_window
from app.inbound.service import InboundService
from app.inbound.worker import InboundWorker
from app.locations.accounts import CastAccounts
from app.locations.endpoints import router as locations_router
from app.locations.repository import LocationSettingsRepository
from app.locations.service import LocationService
from app.logs import new_request_id, request_id_var
from app.metrics import Counters
from app.metrics.endpoints import router as metrics_router
from app.metrics.http import instrument_http
from app.metrics.service import MetricsService
from app.oauth.crypto import build_cipher
from app.oauth.endpoints import router as oauth_router
from app.oauth.repository import InstallationRepository
from app.oauth.service import OAuthService
from app.oauth.tokens import TokenService
from app.optouts.repository import DndQueue, OptOutList, SyncLedger
from app.optouts.service import OptOutService
from app.optouts.sync import CastOptOutSync
from app.optouts.worker import DndWorker
from app.outbound.endpoints import routes as outbound_routes
from app.outbound.repository import OutboxRepository
from app.outbound.service import OutboundService
from app.outbound.worker import OutboundWorker
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
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Resources]]:
    settings: Settings = app.state.settings
    store = build_store(settings)
    await _open_store(store)
    log.info("store opened", extra={"backend": store.backend})
    cast_http = _http_client(str(settings.cast_api_url), settings.cast_api_timeout_seconds)
    ghl_http = _http_client(str(settings.ghl_api_url), settings.ghl_api_timeout_seconds)
    counters = Counters()  # this app's Prometheus registry
    ghl = GHLClient(
        ghl_http,
        observer=counters.upstream("ghl"),
        pacer=GHLPacer(store, settings.ghl_requests_per_10s),
    )
    cipher = build_cipher(settings)
    installations = InstallationRepository(store, cipher)
    location_settings = LocationSettingsRepository(store, cipher)
    cast = CastClient(cast_http, observer=counters.upstream("cast"))
    pacer = CastPacer(store, settings.cast_rate_per_key, settings.cast_ip_rate)
    senders = SenderDirectory(cast, pacer.before_poll)
    accounts = CastAccounts(settings, location_settings, senders=senders)
    account_info = CastAccountInfo(cast, senders, KeyStates(store), counters, pacer.before_poll)
    tokens = TokenService(settings, store, installations, ghl, counters)
    outbox = OutboxRepository(store)
    recipients = RecipientDirectory(store, routing_window(settings))
    dnd_queue = DndQueue(store)
    optout_list = OptOutList(store)
    dnd_worker = DndWorker(settings, dnd_queue, ghl, tokens, counters, optout_list)
    optouts = OptOutService(settings, optout_list, dnd_queue, counters, dnd_worker.wake)
    worker = OutboundWorker(
        settings,
        outbox,
        cast,
        ghl,
        tokens,
        pacer,
        counters,
        accounts=accounts,
        recipients=recipients,
        optouts=optouts,
        account_info=account_info,
    )
    inbox = InboxRepository(store)
    inbound_worker = InboundWorker(
        settings,
        inbox,
        InboundRouter(settings, recipients, location_settings.locations_sending_as),
        ghl,
        tokens,
        counters,
        optouts=optouts,
    )
    optout_sync = CastOptOutSync(
        settings, SyncLedger(store), installations, accounts, cast, pacer, optouts, counters
    )
    resources = Resources(
        settings=settings,
        store=store,
        webhook_keys=load_webhook_keys(settings.ghl_webhook_public_key),
        counters=counters,
        installations=installations,
        tokens=tokens,
        outbound=OutboundService(settings, outbox, counters, worker),
        inbound=InboundService(inbox, counters, inbound_worker.wake),
        oauth=OAuthService(settings, installations, tokens, ghl, counters),
    )
    resources.optouts = optouts
    resources.locations = LocationService(
        settings,
        location_settings,
        accounts,
        installations,
        outbox,
        worker.wake,
        optouts,
        account_info=account_info,
    )
    resources.admin = AdminService(
        installations,
        outbox,
        inbox,
        resources.inbound,
        location_settings,
        accounts,
        counters,
        pacer,
        wake_outbound=worker.wake,
        optouts=optouts,
    )
    resources.metrics = MetricsService(
        counters,
        {"outbound": outbox, "inbound": inbox, "dnd": dnd_queue},
        app.state.http_metrics_registry,
        key_rates=pacer.rates,
    )
    worker_task = asyncio.create_task(worker.run(), name="outbound-worker")
    inbound_task = asyncio.create_task(inbound_worker.run(), name="inbound-worker")
    dnd_task = asyncio.create_task(dnd_worker.run(), name="dnd-worker")
    sync_task = asyncio.create_task(optout_sync.run(), name="cast-optout-sync")
    credits_task = asyncio.create_task(account_info.keep_credits_fresh(), name="cast-credits")
    # Everything built so far lives as long as the process: move it out of the garbage
    # collector's sight, so a full collection scans only what requests create (measured:
    # gen-2 pauses of 50-100 ms under load became ~3 ms; see README, Performance).
    gc.freeze()
    resources.started = True
    log.info("bridge started", extra={"store": store.backend, "port": settings.port})
    try:
        yield {"resources": resources}
    finally:
        resources.started = False
        log.info("shutting down: releasing in-flight work")
        optout_sync.stop()
        credits_task.cancel()
        await asyncio.gather(
            worker.stop(settings.shutdown_timeout_seconds),
            inbound_worker.stop(settings.shutdown_timeout_seconds),
            dnd_worker.stop(settings.shutdown_timeout_seconds),
        )
        await asyncio.gather(worker_task, inbound_task, dnd_task, sync_task)
        await asyncio.gather(credits_task, return_exceptions=True)
        await cast_http.aclose()
        await ghl_http.aclose()
        await store.close()
        log.info("shutdown complete", extra={"counters": counters.snapshot()})


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
    app.router.routes.extend(outbound_routes)
    app.include_router(locations_router)
    app.include_router(inbound_router)
    app.include_router(oauth_router)
    app.include_router(admin_router)
    app.include_router(metrics_router)
    # Middleware added last runs first: request id, HTTP metrics, the body limit, then the raw
    # webhook routes (ahead of FastAPI's routing).
    app.add_middleware(DirectRoutes, routes=outbound_routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=app.state.settings.max_body_bytes)
    app.state.http_metrics_registry = instrument_http(app)
    app.add_middleware(RequestIdMiddleware)
    return app
