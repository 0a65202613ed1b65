"""Which TOKEN_ENCRYPTION_KEY keys each running bridge holds: a heartbeat in the store.

Every bridge writes, every HEARTBEAT_SECONDS, a `key_holders` document of its own (host, pid,
the fingerprints of its keys newest first, the time) and deletes it when it stops. Fingerprints
are a hash of each key, never the key. Two decisions read them:

- `cast-ghl reencrypt` refuses while a live bridge (heard from within LIVE_SECONDS) lacks the
  newest key: the records it re-encrypts would be unreadable to that bridge.
- A record this process cannot decrypt while a bridge heard from within NEWER_KEY_SECONDS holds
  a key this process lacks was probably written with that key (a rotation under way): the work
  waits and is retried, by a bridge that holds it or by this one once restarted with it, rather
  than being treated as lost ("install again").
"""

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from app.store import Store

log = logging.getLogger(__name__)

COLLECTION = "key_holders"
HEARTBEAT_SECONDS = 30.0
LIVE_SECONDS = 3 * HEARTBEAT_SECONDS  # two missed heartbeats: stopped (or killed)
NEWER_KEY_SECONDS = 86_400.0  # how long a bridge's keys count as "the store knows this key"
HOLDERS_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class KeyHolder:
    id: str
    host: str
    pid: int
    keys: tuple[str, ...]  # fingerprints, newest first
    at: float

    def describe(self, now: float) -> str:
        return f"the bridge on {self.host} (pid {self.pid}, seen {max(now - self.at, 0):.0f}s ago)"


class KeyHolderRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def beat(self, holder: KeyHolder) -> None:
        data = {"host": holder.host, "pid": holder.pid, "keys": list(holder.keys), "at": holder.at}
        await self._store.put_doc(COLLECTION, holder.id, data)

    async def forget(self, holder_id: str) -> None:
        await self._store.delete_doc(COLLECTION, holder_id)

    async def seen_since(self, since: float) -> list[KeyHolder]:
        return [
            KeyHolder(doc.id, doc.data["host"], doc.data["pid"], tuple(doc.data["keys"]), at)
            for doc in await self._store.list_docs(COLLECTION, HOLDERS_LIMIT)
            if (at := float(doc.data["at"])) >= since
        ]


async def live_bridges_lacking(
    holders: KeyHolderRepository, newest: str, now: float
) -> list[KeyHolder]:
    """The live bridges that do not hold the key `newest` (a fingerprint)."""
    return [h for h in await holders.seen_since(now - LIVE_SECONDS) if newest not in h.keys]


async def keys_held_elsewhere(
    holders: KeyHolderRepository, mine: tuple[str, ...], now: float
) -> list[str]:
    """Fingerprints of keys bridges heard from lately hold and this process lacks."""
    seen = await holders.seen_since(now - NEWER_KEY_SECONDS)
    return sorted({key for h in seen for key in h.keys} - set(mine))


class KeyHeartbeat:
    """This process's heartbeat: `run()` until cancelled, then `forget()`."""

    def __init__(
        self, holders: KeyHolderRepository, keys: tuple[str, ...], clock: Callable[[], float]
    ) -> None:
        self._holders = holders
        self._clock = clock
        host = socket.gethostname()
        self.holder_id = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._host, self._keys = host, keys

    async def beat(self) -> None:
        holder = KeyHolder(self.holder_id, self._host, os.getpid(), self._keys, self._clock())
        await self._holders.beat(holder)

    async def run(self, interval: float = HEARTBEAT_SECONDS) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # the store is down: the next beat tries again
                log.warning("key heartbeat not written", extra={"reason": type(exc).__name__})
            await asyncio.sleep(interval)

    async def forget(self) -> None:
        try:
            await self._holders.forget(self.holder_id)
        except Exception as exc:  # stale after LIVE_SECONDS anyway
            log.warning("key heartbeat not removed", extra={"reason": type(exc).__name__})
