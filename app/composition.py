"""The composition root: every service and background worker of the bridge, built once from
`Settings`, the store and the two upstream HTTP clients.

The app's lifespan (app/main.py), the `cast-ghl` commands (app/cli.py) and the sandbox
(app/sandbox.py) all build them here, so a command runs exactly the rules a request runs. What
`build_services` returns is complete: no service is added later. Only the lifespan starts the
workers; a command builds them and never runs them (their wake-ups then do nothing).
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from app.admin.service import AdminService
from app.cast.account import CastAccountInfo
from app.cast.accounts import CastAccounts
from app.cast.client import CastClient
from app.cast.keys import KEY_SECRET_PURPOSE, use_key_secret
from app.cast.pacing import CastPacer
from app.cast.repository import KeyStates, SenderLists
from app.cast.senders import SenderDirectory
from app.config import Settings
from app.ghl.client import GHLClient
from app.ghl.conversations import ConversationDirectory
from app.ghl.pacing import GHLPacer
from app.ghl.signature import WebhookKeys, load_webhook_keys
from app.inbound.repository import InboxRepository, RecipientDirectory
from app.inbound.routing import InboundRouter, routing_window
from app.inbound.service import InboundService
from app.inbound.worker import InboundWorker
from app.locations.owners import SenderOwners
from app.locations.repository import LocationSettingsRepository
from app.locations.service import LocationService
from app.messages.repository import MessageLogRepository
from app.messages.service import MessageLog
from app.metrics import Counters
from app.metrics.service import MetricsService, key_locations_reader
from app.oauth.crypto import build_cipher
from app.oauth.keyholders import KeyHeartbeat, KeyHolderRepository
from app.oauth.repository import InstallationRepository
from app.oauth.service import OAuthService
from app.oauth.tokens import TokenService
from app.optouts.repository import DndQueue, OptOutList, SyncLedger
from app.optouts.service import OptOutService
from app.optouts.sync import CastOptOutSync
from app.optouts.worker import DndWorker
from app.outbound.reconcile import ReceiptReconciler
from app.outbound.repository import OutboxRepository, ReceiptLedgers, RefusedMessages
from app.outbound.service import OutboundService
from app.outbound.worker import OutboundWorker
from app.overview.repository import LocationNames
from app.overview.service import OverviewService
from app.store import SQLITE_FILENAME, Store, StoreUnavailable, build_store

COMMAND_STORE_TIMEOUT_SECONDS = 10.0
COMMAND_HTTP_TIMEOUT_SECONDS = 10.0


@dataclass
class Workers:
    """The background loops: the three leased queues, the Cast opt-out sync and the credits
    refresh. Started and stopped by the lifespan, in this order."""

    outbound: OutboundWorker
    inbound: InboundWorker
    dnd: DndWorker
    optout_sync: CastOptOutSync
    account_info: CastAccountInfo
    heartbeat: KeyHeartbeat  # which encryption keys this bridge holds, in the store
    _queues: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _credits: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _heartbeat: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self._queues = [
            asyncio.create_task(self.outbound.run(), name="outbound-worker"),
            asyncio.create_task(self.inbound.run(), name="inbound-worker"),
            asyncio.create_task(self.dnd.run(), name="dnd-worker"),
            asyncio.create_task(self.optout_sync.run(), name="cast-optout-sync"),
        ]
        self._credits = asyncio.create_task(
            self.account_info.keep_credits_fresh(), name="cast-credits"
        )
        self._heartbeat = asyncio.create_task(self.heartbeat.run(), name="key-heartbeat")

    async def stop(self, grace_seconds: float) -> None:
        """Release in-flight work: each queue hands back what it still holds after
        `grace_seconds`."""
        self.optout_sync.stop()
        if self._credits is not None:
            self._credits.cancel()
        await asyncio.gather(
            self.outbound.stop(grace_seconds),
            self.inbound.stop(grace_seconds),
            self.dnd.stop(grace_seconds),
        )
        await asyncio.gather(*self._queues)
        if self._credits is not None:
            await asyncio.gather(self._credits, return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            await self.heartbeat.forget()


class Readiness:
    """Whether start-up finished (GET /readyz): set by the lifespan, never by a request."""

    def __init__(self) -> None:
        self.started = False


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    counters: Counters  # this app's Prometheus registry
    webhook_keys: WebhookKeys
    installations: InstallationRepository
    tokens: TokenService
    outbound: OutboundService  # GHL's Delivery URL
    inbound: InboundService  # the SMS gateway's inbound webhook
    oauth: OAuthService
    optouts: OptOutService  # the suppression list
    locations: LocationService  # the settings page
    admin: AdminService  # the admin API and the CLI (operators)
    metrics: MetricsService  # GET /metrics
    workers: Workers
    readiness: Readiness


def build_services(
    settings: Settings,
    store: Store,
    cast_http: httpx.AsyncClient,
    ghl_http: httpx.AsyncClient,
    http_metrics: CollectorRegistry | None = None,
) -> Services:
    """Every service over `store` (already started), calling Cast and GHL through the clients.
    `http_metrics`: the app's HTTP metrics, appended to GET /metrics."""
    counters = Counters()
    counters.cast_rate_configured.set(settings.cast_rate_per_key)
    ghl = GHLClient(
        ghl_http,
        observer=counters.upstream("ghl"),
        pacer=GHLPacer(store, settings.ghl_requests_per_10s),
    )
    cipher = build_cipher(settings)
    use_key_secret(cipher.derived_secret(KEY_SECRET_PURPOSE))
    installations = InstallationRepository(store, cipher)
    location_settings = LocationSettingsRepository(store, cipher)
    cast = CastClient(cast_http, observer=counters.upstream("cast"))
    pacer = CastPacer(
        store,
        settings.cast_rate_per_key,
        settings.cast_ip_rate,
        egress_group=settings.cast_egress_group,
    )
    senders = SenderDirectory(cast, pacer.before_poll, SenderLists(store))
    accounts = CastAccounts(settings, location_settings, senders)
    account_info = CastAccountInfo(cast, senders, KeyStates(store), counters, pacer.before_poll)
    tokens = TokenService(settings, store, installations, ghl, counters)
    outbox = OutboxRepository(store)
    refused = RefusedMessages(store)
    recipients = RecipientDirectory(store, routing_window(settings))
    dnd_queue = DndQueue(store)
    optout_list = OptOutList(store)
    dnd_worker = DndWorker(settings, dnd_queue, ghl, tokens, counters, optout_list)
    optouts = OptOutService(settings, optout_list, dnd_queue, counters, dnd_worker.wake)
    outbound_worker = OutboundWorker(
        settings,
        outbox,
        cast,
        ghl,
        tokens,
        pacer,
        counters,
        accounts=accounts,
        sent_to=recipients.remember,
        optouts=optouts,
        account_info=account_info,
        refused=refused,
        cipher=cipher,
        receipts=ReceiptReconciler(
            ReceiptLedgers(store),
            cast,
            pacer.before_poll,
            pacer.read_rate_limited,
            pacer.sent_since,
            settings.dlr_logs_interval_seconds,
        ),
    )
    inbox = InboxRepository(store)
    inbound_worker = InboundWorker(
        settings,
        inbox,
        InboundRouter(settings, recipients, SenderOwners(location_settings, accounts).owners),
        ghl,
        tokens,
        counters,
        optouts=optouts,
        conversations=ConversationDirectory(ghl),
    )
    optout_sync = CastOptOutSync(
        settings, SyncLedger(store), installations, accounts, cast, pacer, optouts, counters
    )
    outbound = OutboundService(settings, outbox, counters, outbound_worker)
    names = LocationNames(store)
    message_log = MessageLog(MessageLogRepository(store), names.all)
    overview = OverviewService(
        settings,
        installations,
        location_settings,
        accounts,
        outbox,
        optouts,
        names,
        tokens,
        ghl,
        account_info=account_info,
    )
    inbound = InboundService(inbox, counters, inbound_worker.wake)
    return Services(
        settings=settings,
        store=store,
        counters=counters,
        webhook_keys=load_webhook_keys(settings.ghl_webhook_public_key),
        installations=installations,
        tokens=tokens,
        outbound=outbound,
        inbound=inbound,
        oauth=OAuthService(
            settings, installations, tokens, ghl, counters, optouts=optouts, names=names
        ),
        optouts=optouts,
        locations=LocationService(
            settings,
            location_settings,
            accounts,
            installations,
            outbox,
            outbound,
            optouts,
            account_info=account_info,
            message_log=message_log,
            names=names,
        ),
        admin=AdminService(
            installations,
            outbox,
            inbox,
            inbound,
            location_settings,
            accounts,
            counters,
            pacer,
            wake_outbound=outbound_worker.wake,
            optouts=optouts,
            refused=refused,
            message_log=message_log,
            overview=overview,
        ),
        metrics=MetricsService(
            counters,
            {"outbound": outbox, "inbound": inbox, "dnd": dnd_queue},
            http_metrics,
            key_rates=pacer.rates,
            key_locations=key_locations_reader(settings, location_settings),
        ),
        workers=Workers(
            outbound_worker,
            inbound_worker,
            dnd_worker,
            optout_sync,
            account_info,
            KeyHeartbeat(KeyHolderRepository(store), cipher.fingerprints, time.time),
        ),
        readiness=Readiness(),
    )


def sqlite_file(settings: Settings) -> Path | None:
    """The embedded store's file, when the settings use it."""
    return None if settings.uses_mongo else settings.data_dir.resolve() / SQLITE_FILENAME


@asynccontextmanager
async def command_services(settings: Settings) -> AsyncIterator[Services]:
    """The services over the bridge's existing store, for a command (`cast-ghl`, the sandbox):
    no worker runs; a change a command queues is picked up by a running bridge."""
    sqlite = sqlite_file(settings)
    if sqlite is not None and not sqlite.exists():  # do not create an empty one by mistake
        raise StoreUnavailable(f"no database at {sqlite}: is DATA_DIR (or MONGO_URI) right?")
    store = build_store(settings)
    await asyncio.wait_for(store.start(), COMMAND_STORE_TIMEOUT_SECONDS)
    cast_http = httpx.AsyncClient(
        base_url=str(settings.cast_api_url), timeout=COMMAND_HTTP_TIMEOUT_SECONDS
    )
    ghl_http = httpx.AsyncClient(
        base_url=str(settings.ghl_api_url), timeout=COMMAND_HTTP_TIMEOUT_SECONDS
    )
    try:
        yield build_services(settings, store, cast_http, ghl_http)
    finally:
        await cast_http.aclose()
        await ghl_http.aclose()
        await store.close()
