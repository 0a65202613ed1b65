"""The approved sender IDs of each Cast account and the channel each belongs to (cast-api.md §2,
§5.14): a message goes out through its sender's channel, `/sms/send` or `/sim/send`.

The list (`GET /api/v1/account/sender-ids`) is cached per key fingerprint: asked again after
`ttl` seconds, and on a miss (a sender ID the cached list does not name) at most every
`miss_ttl` seconds. Every list read from Cast is kept in the store (`SenderLists`) and a process
looks there before asking Cast: replicas behind one egress IP read a key's list once for all of
them, and one process per key asks at a time (a claim in the store, released when it has the
answer; the others look for that answer in the store meanwhile, and take the claim once it is
free, at the latest after `CLAIM_WAIT_SECONDS`). One request per key and process at a time; each
waits for the per-IP budget like a receipt poll (`pace`), never for the key's send budget. When
Cast cannot be asked, the last list known here or in the store is used; with none, the answer is
"not known" and the caller decides.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from app.cast.client import CastError
from app.cast.keys import key_fingerprint, key_label, label_of
from app.cast.schemas import Channel, SenderId, SharedSenderList
from app.kit.ttl_cache import TTLCache
from app.phone import InvalidPhoneNumber, to_e164

log = logging.getLogger(__name__)

SENDER_LIST_SECONDS = 300.0
MISS_REFRESH_SECONDS = 30.0
CLAIM_WAIT_SECONDS = 5.0  # how long a process waits for another's read of a key's list
CLAIM_POLL_SECONDS = 0.2  # how often it looks for it in the store meanwhile


def sender_key(value: str) -> str:
    """How two spellings of one sender ID compare: a PH mobile number in any format as E.164,
    a name (anything with a letter: no vanity-number reading) exactly as Cast lists it, outer
    spaces aside. Cast may approve `ACME CO` for one agency and `AcmeCo` for another: they are
    two senders, never one."""
    if not any(ch.isalpha() for ch in value):
        try:
            return to_e164(value)
        except InvalidPhoneNumber:
            pass
    return value.strip()


def find_sender(senders: list[SenderId], sender_id: str) -> SenderId | None:
    wanted = sender_key(sender_id)
    return next((s for s in senders if sender_key(s.sender_id) == wanted), None)


def _by_key(senders: list[SenderId]) -> dict[str, SenderId]:
    by_key: dict[str, SenderId] = {}
    for sender in senders:
        by_key.setdefault(sender_key(sender.sender_id), sender)
    return by_key


def default_channel(senders: list[SenderId]) -> Channel:
    """The channel of a send without a sender ID (Cast then picks one of the account's):
    `sms` when the account has an `sms` sender (or none at all), else its first SIM number's."""
    channels = [s.known_channel for s in senders]
    return "sim" if channels and "sms" not in channels and "sim" in channels else "sms"


class SenderLister(Protocol):
    """The Cast client's sender-ID list (app/cast/client.py `CastClient.sender_ids`)."""

    async def sender_ids(self, api_key: str) -> list[SenderId]: ...


@dataclass(slots=True)
class _Listing:
    fetched_at: float
    senders: list[SenderId]
    by_key: dict[str, SenderId]  # sender_key -> sender: the hot path's lookup


class SharedLists(Protocol):
    """Where processes share what Cast listed (app/cast/repository.py `SenderLists`)."""

    async def get(self, fingerprint: str) -> SharedSenderList | None: ...

    async def put(self, fingerprint: str, listing: SharedSenderList) -> None: ...

    async def claim(self, fingerprint: str, owner: str, now: float) -> bool: ...

    async def release(self, fingerprint: str, owner: str) -> None: ...


class SenderDirectory:
    def __init__(
        self,
        cast: SenderLister,
        pace: Callable[[], Awaitable[None]],
        shared: SharedLists,
        *,
        ttl: float = SENDER_LIST_SECONDS,
        miss_ttl: float = MISS_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,  # wall time: lists are compared across processes
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._cast = cast
        self._pace = pace
        self._shared = shared
        self._owner = uuid.uuid4().hex  # this directory's name on a claim
        self._sleep = sleep
        self._ttl, self._miss_ttl = ttl, miss_ttl
        # The last failed read, by key: not asked again for `miss_ttl`.
        self._failures: TTLCache[str, CastError] = TTLCache(miss_ttl, clock=clock)
        self._clock = clock
        # Kept however old (the fallback when Cast cannot be asked): only bounded in number.
        self._listings: TTLCache[str, _Listing] = TTLCache(math.inf, clock=clock)
        self._locks: dict[str, asyncio.Lock] = {}

    async def senders(self, api_key: str, *, max_age: float | None = None) -> list[SenderId]:
        """The account's approved sender IDs, at most `max_age` (default `ttl`) seconds old.

        Raises CastError when Cast cannot be asked and no list was ever read for this key."""
        fingerprint = key_fingerprint(api_key)
        age = self._ttl if max_age is None else max_age
        listing = self._listings.get(fingerprint)
        if listing is not None and self._clock() - listing.fetched_at <= age:
            return listing.senders
        lock = self._locks.setdefault(fingerprint, asyncio.Lock())
        async with lock:  # one request per key: the others wait and read its answer
            listing = self._listings.get(fingerprint)
            if listing is not None and self._clock() - listing.fetched_at <= age:
                return listing.senders
            if (fresh := await self._from_store(fingerprint, age)) is not None:
                return fresh
            self._raise_recent_failure(fingerprint, listing)
            try:
                return await self._fetch(api_key, fingerprint, age)
            except CastError as exc:
                last = listing.senders if listing else await self._from_store(fingerprint, math.inf)
                if last is None:
                    # not asked again for `miss_ttl`: each ask spends the per-IP budget sends need
                    self._failures.put(fingerprint, exc)
                    raise
                log.warning(
                    "could not refresh the Cast sender IDs; using the last list",
                    extra={"key": label_of(fingerprint), "reason": exc.message},
                )
                return last

    def _raise_recent_failure(self, fingerprint: str, listing: "_Listing | None") -> None:
        failed = self._failures.get(fingerprint)
        if listing is None and failed is not None:
            raise failed

    async def _from_store(
        self, fingerprint: str, age: float, since: float = math.inf
    ) -> list[SenderId] | None:
        """The key's list as another process (or this one) last read it, if at most `age` old
        or read after `since`."""
        stored = await self._shared.get(fingerprint)
        if stored is None:
            return None
        if self._clock() - stored.fetched_at > age and stored.fetched_at < since:
            return None
        self._remember(fingerprint, stored.fetched_at, stored.senders)
        return stored.senders

    async def _fetch(self, api_key: str, fingerprint: str, age: float) -> list[SenderId]:
        """Ask Cast, unless another process is asking for the key right now: then its answer,
        once in the store (or ask once its claim is free)."""
        asked_at = self._clock()
        for _ in range(round(CLAIM_WAIT_SECONDS / CLAIM_POLL_SECONDS)):
            if await self._shared.claim(fingerprint, self._owner, self._clock()):
                break
            await self._sleep(CLAIM_POLL_SECONDS)
            if (answer := await self._from_store(fingerprint, age, since=asked_at)) is not None:
                return answer
        try:  # the list is in the store before the claim is free
            if (answer := await self._from_store(fingerprint, age, since=asked_at)) is not None:
                return answer
            await self._pace()
            senders = await self._cast.sender_ids(api_key)
            listing = SharedSenderList(fetched_at=self._clock(), senders=senders)
            self._remember(fingerprint, listing.fetched_at, senders)
            await self._shared.put(fingerprint, listing)
            return senders
        finally:
            await self._shared.release(fingerprint, self._owner)

    def _remember(self, fingerprint: str, fetched_at: float, senders: list[SenderId]) -> None:
        self._listings.put(fingerprint, _Listing(fetched_at, senders, _by_key(senders)))

    async def lookup(self, api_key: str, sender_id: str) -> SenderId | None:
        """The approved sender ID `sender_id` names (asking Cast again on a miss), or None.

        Raises CastError when Cast cannot be asked and no list is known."""
        wanted = sender_key(sender_id)
        await self.senders(api_key)
        found = self._listed(api_key, wanted)
        if found is None:
            await self.senders(api_key, max_age=self._miss_ttl)
            found = self._listed(api_key, wanted)
        return found

    def _listed(self, api_key: str, wanted: str) -> SenderId | None:
        listing = self._listings.get(key_fingerprint(api_key))
        return listing.by_key.get(wanted) if listing is not None else None

    async def channel_of(self, api_key: str, sender_id: str | None) -> Channel | None:
        """The channel a send with `sender_id` must use, or None when Cast cannot say (it cannot
        be asked, or it does not list the sender ID, or lists it for another channel)."""
        try:
            if sender_id is None:
                return default_channel(await self.senders(api_key))
            found = await self.lookup(api_key, sender_id)
        except CastError as exc:
            log.warning(
                "could not read the Cast sender IDs",
                extra={"key": key_label(api_key), "reason": exc.message},
            )
            return None
        return found.known_channel if found is not None else None
