"""Pacing at Cast's limits so bulk sends never provoke 429s.

Per API key, for the whole cluster: sends are `1/rate` s apart. Each send reserves the next
slot of its key in the store (`Store.reserve_slot`, one atomic update), so several bridge
processes sharing one database never exceed the key's rate together, and nobody holds a lock
that could die with its process. Per process (Cast's per-IP limit): at most `ip_rate`
requests/s through aiolimiter. Keys are identified by a fingerprint, never by the key itself.
"""

import asyncio
import hashlib
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from app.store import Store

POLL_YIELD_SECONDS = 0.02
# A send that wakes up later than this after its slot (a starved event loop) takes a new slot:
# firing many late slots at once would be a burst Cast answers with 429.
MAX_SLOT_LATENESS = 0.25


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class CastPacer:
    def __init__(
        self,
        store: Store,
        per_key_rate: float,
        ip_rate: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._interval = 1.0 / per_key_rate
        self._clock = clock
        self._ip = AsyncLimiter(ip_rate, 1.0)
        self._sends_waiting_for_ip = 0

    async def before_send(self, api_key: str) -> None:
        name = f"cast-key:{key_fingerprint(api_key)}"
        while True:
            slot = await self._store.reserve_slot(name, now=self._clock(), interval=self._interval)
            delay = slot - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._clock() - slot <= MAX_SLOT_LATENESS:
                break
        self._sends_waiting_for_ip += 1
        try:
            await self._ip.acquire()
        finally:
            self._sends_waiting_for_ip -= 1

    async def before_poll(self) -> None:
        """Status polls use the per-IP budget too, but only what sends leave over."""
        # The budget refills with time, not on an event, so this polls.
        while self._sends_waiting_for_ip or not self._ip.has_capacity():  # noqa: ASYNC110
            await asyncio.sleep(POLL_YIELD_SECONDS)
        await self._ip.acquire()
