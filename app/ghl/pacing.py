"""Pacing GHL calls per location, for the whole cluster, within GHL's limits.

GHL allows a Marketplace app 100 requests per 10 s and 200,000 per day per location (its
limiter's algorithm is not documented: the strictest plausible one is a sliding log, at most 100
in ANY 10 s). Every location-scoped call (status updates, contact look-ups and upserts, inbound
messages, and any call added later) goes through `GHLPacer.before_call`, which `GHLClient` calls
for a request made with a `location_id`:

- one slot per call from the store (`app/pacing.py`), `spacing(limit - HEADROOM, 10 s)` apart
  (10.04 s / 99, 9.86 calls/s): call k and call k+99 leave more than 10 s apart whatever the
  network's jitter. One of the 100 is left over (`HEADROOM`), so our own calls never bring
  `X-RateLimit-Remaining` to 0 (9.86/s still keeps up with one status update per SMS at Cast's
  10/s, paced to 9.6/s);
- first come, first served: slots go in the order calls ask, so no kind of call starves
  another and a reply waits behind at most the calls that asked before it;
- GHL's answers adjust it (`after_response`): `X-RateLimit-Remaining: 0` blocks the location
  for `X-RateLimit-Interval-Milliseconds`, `X-RateLimit-Daily-Remaining: 0` until the next UTC
  day (GHL's reset time is UNCONFIRMED), a 429 for Retry-After, else the interval, else 10 s.
  The block is kept in the store: every process waits it out.
"""

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from app.pacing import PacingRepository, Turns, spacing
from app.store import Store

LIMIT, WINDOW_SECONDS = 100, 10.0
HEADROOM = 1  # never used by our own calls: X-RateLimit-Remaining: 0 means someone else
DEFAULT_BLOCK_SECONDS = 10.0
LOCATION_PREFIX = "ghl-location:"


def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def block_seconds(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """How long GHL asks this location to wait, from a response's status and headers."""
    interval_ms = _number(headers, "x-ratelimit-interval-milliseconds")
    interval = interval_ms / 1000 if interval_ms is not None else None
    if _number(headers, "x-ratelimit-daily-remaining") == 0:
        midnight = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
        return datetime.combine(midnight, datetime.min.time(), UTC).timestamp() - now
    if status == 429:
        return _number(headers, "retry-after") or interval or DEFAULT_BLOCK_SECONDS
    if _number(headers, "x-ratelimit-remaining") == 0:
        return interval or DEFAULT_BLOCK_SECONDS
    return None


class LocationPacer(Protocol):
    """What `GHLClient` asks before and tells after each location-scoped call."""

    async def before_call(self, location_id: str) -> None: ...

    async def after_response(
        self, location_id: str, status: int, headers: Mapping[str, str]
    ) -> float | None: ...


class Unpaced:
    """Never waits, never blocks: for a client whose calls need no pacing, as the `check`
    command's probe of the client id/secret (no location-scoped call, made before any store is
    known to exist)."""

    async def before_call(self, location_id: str) -> None:
        return None

    async def after_response(
        self, location_id: str, status: int, headers: Mapping[str, str]
    ) -> float | None:
        return None


class GHLPacer:
    def __init__(
        self, store: Store, limit: int = LIMIT, clock: Callable[[], float] = time.time
    ) -> None:
        self._repo = PacingRepository(store)
        self._turns = Turns(self._repo, clock)
        self._interval = spacing(limit - HEADROOM, WINDOW_SECONDS)
        self._clock = clock

    async def before_call(self, location_id: str) -> None:
        """Wait for the location's next slot (first come, first served: slots are handed out
        in the order calls ask), and until a block GHL asked for is over."""
        await self._turns.take(LOCATION_PREFIX + location_id, lambda _state, _now: self._interval)

    async def after_response(
        self, location_id: str, status: int, headers: Mapping[str, str]
    ) -> float | None:
        """Learn from GHL's answer; the seconds the location is now blocked for, if any."""
        now = self._clock()
        seconds = block_seconds(status, headers, now)
        if seconds is not None:
            await self._repo.update_state(
                LOCATION_PREFIX + location_id, lambda s: s.blocked(now + seconds)
            )
        return seconds
