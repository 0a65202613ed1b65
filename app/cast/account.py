"""A Cast account at a glance (issue 22): balance, billing type, approved sender IDs, the last 30
days of usage, and whether Cast currently refuses the key.

Every answer is cached per key identity (balance 60 s, profile 5 min, usage 10 min; sender
IDs through the SenderDirectory), so the settings page opens without asking Cast again; so is
every failure, for 30 s. The balance is read first: when Cast refuses the key, nothing else is
asked (a refused key costs one Cast call per 30 s, however often the page is opened). The
calls wait for the per-IP request budget like receipt polls (`pace`), never for the key's send
budget, and the page waits for them at most `timeout` seconds in total: what Cast did not answer
by then shows as "could not be read". A balance read sets `bridge_cast_credits{key}`; one that
Cast refuses with a key-state code marks the key broken, one that succeeds clears it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.cast.client import CastClient, CastError
from app.cast.keys import key_fingerprint, key_label
from app.cast.repository import CREDIT_CODES, KeyStates
from app.cast.schemas import KeyState, Profile, SenderId, Usage
from app.cast.senders import SenderDirectory
from app.kit.ttl_cache import TTLCache
from app.metrics import Counters

log = logging.getLogger(__name__)

BALANCE_SECONDS, PROFILE_SECONDS, USAGE_SECONDS = 60.0, 300.0, 600.0
FAILURE_SECONDS = 30.0  # a failed read is not asked again before
AFTER_BALANCE = ("profile", "senders", "usage")  # read once the balance shows the key works
CREDITS_REFRESH_SECONDS = 300.0  # the metric: balances of keys that sent in the last hour
ACTIVE_KEY_SECONDS = 3600.0
USAGE_DAYS = 30
PAGE_TIMEOUT_SECONDS = 1.5


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What the page shows of a Cast account; None where Cast did not answer (see `problems`)."""

    credits: int | None = None
    profile: Profile | None = None
    senders: list[SenderId] | None = None
    usage: Usage | None = None
    state: KeyState | None = None  # Cast refuses the key: why
    problems: list[str] = field(default_factory=list)


class CastAccountInfo:
    def __init__(
        self,
        cast: CastClient,
        senders: SenderDirectory,
        states: KeyStates,
        counters: Counters,
        pace: Callable[[], Awaitable[None]],
        *,
        timeout: float = PAGE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cast = cast
        self._senders = senders
        self.states = states
        self._counters = counters
        self._pace = pace
        self._timeout = timeout
        self._clock = clock
        self._cache: TTLCache[tuple[str, str], Any] = TTLCache(BALANCE_SECONDS, clock=clock)
        self._failures: TTLCache[tuple[str, str], CastError] = TTLCache(
            FAILURE_SECONDS, clock=clock
        )
        self._active: dict[str, tuple[str, float]] = {}  # fingerprint -> (key, last send)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def snapshot(self, api_key: str) -> AccountSnapshot:
        """Everything at once, from the caches or Cast, within `timeout` seconds: the balance
        first, then the rest unless Cast refused the key."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        values: dict[str, Any] = {}
        problems: list[str] = []
        balance = asyncio.ensure_future(self.credits(api_key))
        await self._collect({"credits": balance}, self._timeout, values, problems)
        if balance.done() and _refuses_key(balance):
            problems += [f"{name}: not read, Cast refuses the key" for name in AFTER_BALANCE]
        else:
            tasks = {
                "profile": self._cached(api_key, "profile", PROFILE_SECONDS, self._profile),
                "senders": self._senders.senders(api_key),
                "usage": self._cached(api_key, "usage", USAGE_SECONDS, self._usage),
            }
            started = {name: asyncio.ensure_future(call) for name, call in tasks.items()}
            await self._collect(started, max(deadline - loop.time(), 0.0), values, problems)
        return AccountSnapshot(**values, state=await self.states.get(api_key), problems=problems)

    @staticmethod
    async def _collect(
        tasks: "dict[str, asyncio.Future[Any]]",
        seconds: float,
        values: dict[str, Any],
        problems: list[str],
    ) -> None:
        """Each task's result into `values`, or why not into `problems`, within `seconds`."""
        done, pending = await asyncio.wait(tasks.values(), timeout=seconds)
        for task in pending:  # the cache keeps whatever arrives later for the next view
            task.add_done_callback(_ignore_result)
        for name, task in tasks.items():
            if task not in done:
                problems.append(f"{name}: Cast did not answer in time")
            elif (error := task.exception()) is not None:
                reason = error.reason if isinstance(error, CastError) else str(error)
                problems.append(f"{name}: {reason}")
            else:
                values[name] = task.result()

    async def credits(self, api_key: str) -> int:
        return await self._cached(api_key, "credits", BALANCE_SECONDS, self._balance)

    def used(self, api_key: str) -> None:
        """The worker sent with this key: keep its balance metric fresh for the next hour."""
        self._active[key_fingerprint(api_key)] = (api_key, self._clock())

    async def keep_credits_fresh(self, interval: float = CREDITS_REFRESH_SECONDS) -> None:
        """Runs until cancelled: every `interval`, the balance of each recently used key."""
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            for fingerprint, (api_key, at) in list(self._active.items()):
                if now - at > ACTIVE_KEY_SECONDS:
                    del self._active[fingerprint]
                elif not await self._refused_for_good(api_key):
                    await self.refresh_credits(api_key)

    async def _refused_for_good(self, api_key: str) -> bool:
        """Marked broken for another reason than credits (revoked, invalid, disabled): a balance
        read cannot clear it, only a send or a new key."""
        state = await self.states.get(api_key)
        return state is not None and state.code not in CREDIT_CODES

    async def refresh_credits(self, api_key: str) -> None:
        """Read the balance again (the metric's refresher); errors are logged, not raised."""
        slot = ("credits", key_fingerprint(api_key))
        self._cache.pop(slot)
        self._failures.pop(slot)
        try:
            await self.credits(api_key)
        except CastError as exc:
            log.warning(
                "could not read a Cast balance",
                extra={"key": key_label(api_key), "reason": exc.message},
            )

    async def _cached(
        self, api_key: str, what: str, ttl: float, fetch: Callable[[str], Awaitable[Any]]
    ) -> Any:
        slot = (what, key_fingerprint(api_key))
        if (cached := self._cache.get(slot)) is not None:
            return cached
        async with self._locks.setdefault(slot, asyncio.Lock()):  # one request per key and kind
            if (cached := self._cache.get(slot)) is not None:
                return cached
            if (failed := self._failures.get(slot)) is not None:
                raise failed
            await self._pace()
            try:
                value = await fetch(api_key)
            except CastError as exc:
                self._failures.put(slot, exc)
                if exc.key_state:
                    await self.states.refused(api_key, exc)
                raise
            self._failures.pop(slot)
            self._cache.put(slot, value, ttl)
            return value

    async def _balance(self, api_key: str) -> int:
        credits = await self._cast.account_balance(api_key)
        await self.states.checked(api_key, credits)  # a check with the key succeeded
        self._counters.set_credits(key_label(api_key), credits)
        return credits

    async def _profile(self, api_key: str) -> Profile:
        return await self._cast.profile(api_key)

    async def _usage(self, api_key: str) -> Usage:
        today = datetime.now(UTC).date()
        since = today - timedelta(days=USAGE_DAYS - 1)
        return await self._cast.usage(api_key, since.isoformat(), today.isoformat())


def _refuses_key(task: "asyncio.Future[Any]") -> bool:
    error = task.exception()
    return isinstance(error, CastError) and (error.key_state or error.status in (401, 403))


def _ignore_result(task: "asyncio.Future[Any]") -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
