"""What the store keeps of Cast accounts (the only Cast code touching the store): keys Cast
refused as a whole (out of credits, key revoked or invalid, account disabled, IP not allowed),
and each key's sender-ID list as last read (`SenderLists`).

Key states: one document per key identity (app/cast/keys.py) in `cast_key_states`, written when
a send or an account check is refused with such a code, deleted when a send or a check with the
key succeeds again. Every bridge process and the settings page read the same state. The hot
path asks "is this key marked broken?" through a cache of a few seconds, so a healthy key costs
one store read per key per `ttl`, not one per message.
"""

import time
from collections.abc import Callable

from app.cast.client import CastError
from app.cast.keys import key_fingerprint
from app.cast.schemas import KeyState, SharedSenderList
from app.kit.ttl_cache import TTLCache
from app.store import Store

COLLECTION = "cast_key_states"
SENDER_LISTS = "cast_sender_lists"
SENDER_CLAIM_PREFIX = "cast-sender-list:"
# How long a claim to ask Cast for a key's sender-ID list outlives a claimant that died asking.
SENDER_CLAIM_SECONDS = 5.0
STATE_CACHE_SECONDS = 5.0
# A readable balance proves the key and the account work, not that a send can be paid for.
CREDIT_CODES = frozenset({"INSUFFICIENT_CREDITS", "CREDIT_LIMIT_REACHED"})


class KeyStates:
    def __init__(
        self,
        store: Store,
        *,
        ttl: float = STATE_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._marked: TTLCache[str, bool] = TTLCache(ttl, clock=monotonic)  # identity -> broken

    async def get(self, api_key: str) -> KeyState | None:
        doc = await self._store.get_doc(COLLECTION, key_fingerprint(api_key))
        return KeyState.model_validate(doc.data) if doc else None

    async def refused(self, api_key: str, exc: CastError) -> None:
        """Cast refused the key as a whole (`exc.key_state`): mark it broken, with the reason."""
        fingerprint = key_fingerprint(api_key)
        state = KeyState(code=exc.code or "", reason=exc.reason, at=self._clock())
        await self._store.put_doc(COLLECTION, fingerprint, state.model_dump())
        self._marked.put(fingerprint, True)

    async def checked(self, api_key: str, credits: int) -> None:
        """Cast answered a balance check: clears a key or account refusal, and an
        out-of-credits one once the prepaid balance is above zero (a postpaid limit only clears
        with a send)."""
        state = await self.get(api_key)
        if state is None:
            return
        if state.code == "CREDIT_LIMIT_REACHED" or (state.code in CREDIT_CODES and credits <= 0):
            return
        await self._store.delete_doc(COLLECTION, key_fingerprint(api_key))
        self._marked.put(key_fingerprint(api_key), False)

    async def worked(self, api_key: str) -> None:
        """A send or a check with the key succeeded: clear a broken mark, if any."""
        fingerprint = key_fingerprint(api_key)
        if self._marked.get(fingerprint) is False:  # known clear
            return
        await self._store.delete_doc(COLLECTION, fingerprint)
        self._marked.put(fingerprint, False)


class SenderLists:
    """Each Cast key's approved sender IDs as last read from Cast, in `cast_sender_lists` (one
    document per key identity): every process reads the list there before asking Cast, and one
    process at a time asks (`claim`), so replicas behind one egress IP read a key's list once,
    not once each."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, fingerprint: str) -> SharedSenderList | None:
        doc = await self._store.get_doc(SENDER_LISTS, fingerprint)
        return SharedSenderList.model_validate(doc.data) if doc else None

    async def put(self, fingerprint: str, listing: SharedSenderList) -> None:
        await self._store.put_doc(SENDER_LISTS, fingerprint, listing.model_dump(mode="json"))

    async def claim(self, fingerprint: str, owner: str, now: float) -> bool:
        """True for one process at a time (`owner`) until it releases the claim, or for at most
        `SENDER_CLAIM_SECONDS` if it never does (it died asking): that one asks Cast."""
        return await self._store.acquire_lease(
            SENDER_CLAIM_PREFIX + fingerprint, owner, now=now, seconds=SENDER_CLAIM_SECONDS
        )

    async def release(self, fingerprint: str, owner: str) -> None:
        await self._store.release_lease(SENDER_CLAIM_PREFIX + fingerprint, owner)
