"""Pacing at Cast's limits so bulk sends never provoke 429s.

Per API key: at most `rate` messages/s, one every 1/rate s (a bucket of one, so no 1-second
window ever sees more than `rate`). Per process (Cast's per-IP limit): `ip_rate` requests/s.
Keys are identified by a fingerprint, never by the key itself.
"""

import asyncio
import hashlib

from aiolimiter import AsyncLimiter

POLL_YIELD_SECONDS = 0.02


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class CastPacer:
    def __init__(self, per_key_rate: float, ip_rate: float) -> None:
        self._per_key_rate = per_key_rate
        self._keys: dict[str, AsyncLimiter] = {}
        self._ip = AsyncLimiter(ip_rate, 1.0)
        self._sends_waiting_for_ip = 0

    def _key_limiter(self, api_key: str) -> AsyncLimiter:
        fingerprint = key_fingerprint(api_key)
        limiter = self._keys.get(fingerprint)
        if limiter is None:
            limiter = self._keys[fingerprint] = AsyncLimiter(1, 1.0 / self._per_key_rate)
        return limiter

    async def before_send(self, api_key: str) -> None:
        await self._key_limiter(api_key).acquire()
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
