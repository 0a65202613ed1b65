"""What `GET /metrics` answers: the bridge's counters, the queue gauges and the Cast keys' rates
read from the store at scrape time, and the HTTP metrics (app/metrics/http.py)."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from app.cast.keys import key_label
from app.config import Settings
from app.kit.queues import QueueRepository
from app.locations.repository import LocationSettingsRepository
from app.metrics import DEFAULT_LOCATION, Counters, KeyLocation

log = logging.getLogger(__name__)

STORE_TIMEOUT_SECONDS = 2.0


class MetricsService:
    def __init__(
        self,
        counters: Counters,
        queues: Mapping[str, QueueRepository[Any]],
        http_registry: CollectorRegistry,
        *,
        key_rates: Callable[[], Awaitable[dict[str, float]]],
        key_locations: Callable[[], Awaitable[Sequence[KeyLocation]]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key_locations = key_locations  # which key serves which location, thresholds
        self._counters = counters
        self._key_rates = key_rates  # the Cast keys' adapted rates
        self._queues = queues
        self._http_registry = http_registry
        self._clock = clock

    async def _read_queues(self) -> None:
        for name, queue in self._queues.items():
            counts = await queue.counts()
            oldest = await queue.oldest_pending()
            self._counters.set_queue(name, counts, oldest, self._clock())
        self._counters.set_key_rates(await self._key_rates())
        self._counters.set_key_locations(await self._key_locations())

    async def exposition(self) -> bytes:
        """The Prometheus text format. A store that does not answer keeps the last queue
        values and sets `bridge_store_up` to 0."""
        try:
            await asyncio.wait_for(self._read_queues(), STORE_TIMEOUT_SECONDS)
            self._counters.store_up.set(1)
        except Exception as exc:  # a scrape must answer even when the store does not
            self._counters.store_up.set(0)
            log.warning("metrics: queue gauges not read", extra={"reason": type(exc).__name__})
        body = self._counters.render()
        body += generate_latest(self._http_registry)
        return body


def key_locations_reader(
    settings: Settings, repository: LocationSettingsRepository
) -> Callable[[], Awaitable[list[KeyLocation]]]:
    """What the scrape reads for `bridge_cast_key_location` and the thresholds: the default key
    (DEFAULT_LOCATION) and every location with its own (readable) Cast key."""
    default_key = settings.cast_api_key.get_secret_value()

    async def read() -> list[KeyLocation]:
        default = settings.low_credit_threshold
        rows = [KeyLocation(DEFAULT_LOCATION, key_label(default_key), default)]
        for location_id, own_key, own_threshold in await repository.credit_settings():
            if own_key:  # the others send with the default key: its series are theirs
                threshold = own_threshold if own_threshold is not None else default
                rows.append(KeyLocation(location_id, key_label(own_key), threshold))
        return rows

    return read
