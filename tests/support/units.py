"""In-process fakes for unit tests of the state machines (token service, inbound and outbound
workers): a clock that moves only when told, and GHL / Cast clients whose answers a test
scripts. No HTTP, no sleeping; the store under test is a real one, and so is every collaborator
the workers are built with here (`outbound_worker`)."""

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI

from app.cast.account import CastAccountInfo
from app.cast.accounts import CastAccounts
from app.cast.client import CastClient
from app.cast.pacing import CastPacer
from app.cast.repository import KeyStates
from app.cast.schemas import Channel, SendRequest, SendResult, StatusResult
from app.cast.senders import SenderDirectory
from app.config import Settings, load_settings
from app.devkit.harness import CAST_KEY, ENCRYPTION_KEY
from app.ghl.schemas import InboundMessage, StatusUpdate, TokenResponse
from app.inbound.repository import RecipientDirectory
from app.inbound.routing import routing_window
from app.locations.repository import LocationSettingsRepository
from app.metrics import Counters, unobserved
from app.oauth.crypto import TokenCipher, build_cipher
from app.oauth.repository import InstallationRepository, company_key, location_key
from app.oauth.schemas import Installation
from app.oauth.tokens import TokenService
from app.optouts.repository import DndQueue, OptOutList
from app.optouts.service import OptOutService
from app.outbound.reconcile import Lookup, outstanding
from app.outbound.repository import OutboxRepository, RefusedMessages
from app.outbound.schemas import OutboundMessage
from app.outbound.worker import OutboundWorker
from app.store import Store, WorkItem
from tests.support.doubles import NothingShared, no_pacing, unknown_senders

START = 1_800_000_000.0
DAY = 86_400
DEFAULT = object()  # a scripted outcome: the method's default answer


def at_time(expected: Any) -> Any:
    """A time (or list of times) to a tenth of a millisecond (sums of float intervals on an
    epoch time drift by microseconds): `pytest.approx`'s default tolerance is relative, and
    1e-6 of an epoch time is half an hour."""
    return pytest.approx(expected, abs=1e-4)


class FakeClock:
    """`clock()` is the current time; `advance(seconds)` is the only way it changes."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unit_settings(**overrides: object) -> Settings:
    defaults: dict[str, object] = {
        "ghl_client_id": "client-id",
        "ghl_client_secret": "client-secret",
        "cast_api_key": CAST_KEY,
        "token_encryption_key": ENCRYPTION_KEY,
    }
    return load_settings(**(defaults | overrides))


def installations(store: Store) -> InstallationRepository:
    return InstallationRepository(store, TokenCipher(ENCRYPTION_KEY.encode()))


async def install(
    repository: InstallationRepository,
    now: float,
    *,
    location_id: str | None = None,
    company_id: str | None = None,
    token: str = "access-0",
    expires_in: float = DAY,
    **fields: Any,
) -> Installation:
    """Store an installation of a location (or, without `location_id`, of a company)."""
    kind = "location" if location_id is not None else "company"
    ident = location_key(location_id) if location_id is not None else company_key(company_id or "")
    installation = Installation(
        id=ident,
        kind=kind,
        location_id=location_id,
        company_id=company_id,
        access_token=token,
        refresh_token=f"refresh-of-{token}",
        expires_at=now + expires_in,
        installed_at=now,
        updated_at=now,
        **fields,
    )
    await repository.put(installation)
    return installation


class NoChoices:
    """Account choices no location has made (`AccountChoices`): every location uses the
    operator's default Cast account."""

    async def get(self, location_id: str, *, strict: bool = True) -> None:
        return None


class Scripted:
    """Records every call by method name. A test queues outcomes per method: an exception is
    raised, DEFAULT gives the default answer, anything else is returned; with none queued, the
    default answer (numbered 1, 2, ... per method, in the order given). `hold(method)` makes
    its calls wait until the returned event is set (a call in flight)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._outcomes: dict[str, deque[object]] = defaultdict(deque)
        self._held: dict[str, asyncio.Event] = {}
        self._ids: dict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))

    def script(self, method: str, *outcomes: object) -> None:
        self._outcomes[method].extend(outcomes)

    def hold(self, method: str) -> asyncio.Event:
        return self._held.setdefault(method, asyncio.Event())

    async def called(self, method: str) -> None:
        """Return once `method` was called (a call held in flight stays there)."""
        for _ in range(10_000):
            if self.calls[method]:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{method} was not called")

    async def answer(self, method: str, default: Callable[[int], object], *args: Any) -> Any:
        self.calls[method].append(args)
        await asyncio.sleep(0)  # a real client yields: let concurrent callers interleave
        if method in self._held:
            await self._held[method].wait()
        if self._outcomes[method]:
            outcome = self._outcomes[method].popleft()
            if isinstance(outcome, BaseException):
                raise outcome
            if outcome is not DEFAULT:
                return outcome
        return default(next(self._ids[method]))


class FakeGHL(Scripted):
    """The GHLClient methods the token service and the workers call."""

    async def exchange_token(self, form: dict[str, str]) -> TokenResponse:
        def default(n: int) -> TokenResponse:
            return TokenResponse(access_token=f"access-{n}", refresh_token=f"refresh-{n}")

        return await self.answer("exchange_token", default, form)

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenResponse:
        def default(n: int) -> TokenResponse:
            return TokenResponse(access_token=f"loc-access-{n}", refresh_token=f"loc-refresh-{n}")

        return await self.answer("location_token", default, company_token, company_id, location_id)

    async def update_message_status(
        self, token: str, message_id: str, update: StatusUpdate, *, location_id: str
    ) -> None:
        await self.answer("update_message_status", lambda n: None, token, message_id, update)

    async def find_contact_by_phone(
        self, token: str, location_id: str, phone: str
    ) -> dict[str, Any] | None:
        return await self.answer("find_contact_by_phone", lambda n: None, token, location_id, phone)

    async def upsert_contact(self, token: str, location_id: str, phone: str) -> dict[str, Any]:
        return await self.answer(
            "upsert_contact", lambda n: {"id": f"contact-{n}"}, token, location_id, phone
        )

    async def search_conversations(
        self, token: str, location_id: str, contact_id: str
    ) -> list[dict[str, Any]]:
        return await self.answer(
            "search_conversations", lambda n: [], token, location_id, contact_id
        )

    async def create_conversation(
        self, token: str, location_id: str, contact_id: str
    ) -> dict[str, Any]:
        def default(n: int) -> dict[str, Any]:
            return {"id": f"conv-{n}", "contactId": contact_id, "locationId": location_id}

        return await self.answer("create_conversation", default, token, location_id, contact_id)

    async def add_inbound_message(
        self, token: str, message: InboundMessage, *, location_id: str
    ) -> dict[str, Any]:
        def default(n: int) -> dict[str, Any]:
            return {"conversationId": message.conversation_id, "messageId": f"ghl-msg-{n}"}

        return await self.answer("add_inbound_message", default, token, message)

    def tokens_used(self, method: str) -> list[str]:
        return [args[0] for args in self.calls[method]]


class FakeCast(Scripted):
    """The CastClient methods the outbound worker calls."""

    async def send_sms(
        self,
        api_key: str,
        request: SendRequest,
        *,
        idempotency_key: str,
        channel: Channel,
    ) -> SendResult:
        def default(n: int) -> SendResult:
            return SendResult(success=True, message_id=f"cast-{n}")

        return await self.answer("send_sms", default, api_key, request, idempotency_key, channel)

    async def message_status(self, api_key: str, message_id: str, channel: Channel) -> StatusResult:
        def default(n: int) -> StatusResult:
            return StatusResult(message_id=message_id, status="sent")

        return await self.answer("message_status", default, api_key, message_id, channel)

    def idempotency_keys(self) -> list[str]:
        return [args[2] for args in self.calls["send_sms"]]


class Worker(Protocol):
    async def _process(self, item: WorkItem) -> None: ...


async def claim_one(store: Store, queue: str, clock: FakeClock) -> WorkItem:
    """The one item of `queue` due at the clock's time, leased."""
    claimed = await store.claim(queue, now=clock(), lease_seconds=60, limit=2)
    assert len(claimed) == 1, f"{len(claimed)} items due in {queue}"
    return claimed[0]


async def step(worker: Worker, store: Store, queue: str, clock: FakeClock) -> WorkItem:
    """Let `worker` process the one due item (what its loop does); the item as stored after."""
    item = await claim_one(store, queue, clock)
    await worker._process(item)
    after = await store.get_item(queue, item.id)
    assert after is not None
    return after


async def cancel_in_flight(
    worker: Worker, store: Store, queue: str, clock: FakeClock, client: Scripted, method: str
) -> WorkItem:
    """Start processing the due item, cancel it while `client.method` is in flight (a shutdown
    past its grace period); the item as stored after."""
    item = await claim_one(store, queue, clock)
    client.hold(method)
    task = asyncio.create_task(worker._process(item))
    await client.called(method)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    after = await store.get_item(queue, item.id)
    assert after is not None
    return after


@contextlib.asynccontextmanager
async def cast_client_over(app: FastAPI) -> AsyncIterator[CastClient]:
    """A real CastClient whose requests go in-process to `app` (a fake Cast's ASGI app)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cast") as http:
        yield CastClient(http, unobserved)


def optout_service(settings: Settings, store: Store) -> OptOutService:
    """The suppression list over `store` (its DND tasks are queued, no DND worker runs)."""
    return OptOutService(settings, OptOutList(store), DndQueue(store), Counters())


class StatusOnlyReceipts:
    """Receipts with no logs reads: every part is asked `/status` (the in-process FakeCast has
    no `/sms/logs`; the reconciler itself is tested over the fake Cast's app in
    tests/test_reconcile.py)."""

    interval = 1.0

    async def look_up(self, api_key: str, message: OutboundMessage) -> Lookup:
        logged, others = outstanding(message)
        return Lookup(by_status={*logged, *others})


def outbound_worker(
    settings: Settings,
    store: Store,
    cast: Any,
    ghl: Any,
    tokens: TokenService,
    pacer: CastPacer,
    clock: Callable[[], float] = time.time,
    **collaborators: Any,
) -> OutboundWorker:
    """An OutboundWorker over `store` with what production gives it, each part real over the
    same store (the locations' Cast accounts, the suppression list, key states, refused
    messages, the recipient directory), unless a test passes its own in `collaborators`. The
    accounts' sender-ID lists cannot be asked for (`unknown_senders`): a channel is assumed."""
    cipher = build_cipher(settings)
    counters = Counters()
    given: dict[str, Any] = {
        "accounts": CastAccounts(
            settings, LocationSettingsRepository(store, cipher), unknown_senders()
        ),
        "optouts": optout_service(settings, store),
        "account_info": CastAccountInfo(
            cast,
            SenderDirectory(cast, no_pacing, NothingShared()),
            KeyStates(store),
            counters,
            no_pacing,
        ),
        "refused": RefusedMessages(store),
        "sent_to": RecipientDirectory(store, routing_window(settings)).remember,
        "cipher": cipher,
        "receipts": StatusOnlyReceipts(),
    } | collaborators
    outbox = OutboxRepository(store)
    return OutboundWorker(settings, outbox, cast, ghl, tokens, pacer, counters, clock, **given)
