"""The one in-process cache: entries expire `ttl` seconds after they were put, and the map never
holds more than `max_entries` (the oldest put goes first)."""

import time
from collections.abc import Callable, Hashable

MAX_ENTRIES = 10_000


class TTLCache[K: Hashable, V]:
    def __init__(
        self,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The value put under `key`, or None once it expired (or was never put)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep `value` for `ttl` seconds (the cache's own by default)."""
        self._entries.pop(key, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._clock() + (self._ttl if ttl is None else ttl), value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
