"""Delivery receipts by reconciliation: one `/sms/logs` read per Cast key and round settles
every outstanding part of that key it lists (cast-api.md §4, §5.15).

A message waiting for its receipts asks `look_up` at each of its polls. Per key, at most one
process reads the key's logs per `interval` (a claim in the store, `ReceiptLedgers.claim_round`):
newest first, 500 a page, paging on by `offset` while a page is full and a part this process
waits for is not in it yet (at most `MAX_PAGES`; offsets over a log that grows at its head only
repeat entries, never skip one). What the read found goes to the key's ledger in the store, so
every process, and this one after a restart, settles its parts from it without asking Cast again.

`/sms/status/{id}` stays for what the logs cannot settle: a part sent through the SIM gateway
(the logs list `/sms/send` messages), a lone message (the only one of its key this process
waits for, whose key sent nothing since in any process (`sent_since`, the key's slot line in
the store): one status request costs what one logs read costs, and says more), a part absent
from the logs after `LOG_ROUNDS` polls, and the parts of a key whose last logs read failed.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from app.cast.client import CastError
from app.cast.pacing import key_fingerprint
from app.cast.schemas import SmsLogs, StatusResult
from app.outbound.receipts import Receipt, classify, status_of_log
from app.outbound.repository import ReceiptLedgers
from app.outbound.schemas import LoggedReceipt, OutboundMessage, ReceiptLedger

log = logging.getLogger(__name__)

LOGS_PAGE = 500  # Cast's largest page
MAX_PAGES = 4  # a round reads at most this many pages of one key
LOG_ROUNDS = 3  # polls a part may be absent from the logs before it is asked by status
CACHE_SECONDS = 1.0  # a process reads a key's ledger from the store at most this often
KEEP_SECONDS = 600.0  # an entry stays in its ledger this long after it was last listed


class LogsReader(Protocol):
    """The Cast client's logs read (app/cast/client.py `CastClient.sms_logs`)."""

    async def sms_logs(self, api_key: str, *, limit: int, offset: int = 0) -> SmsLogs: ...


@dataclass
class Lookup:
    """What a poll learns before asking Cast anything itself: the parts the logs settled (their
    final receipt), the parts to ask `/status` for, and whether a part waits for a later round."""

    settled: dict[str, StatusResult] = field(default_factory=dict)
    by_status: set[str] = field(default_factory=set)
    waiting: bool = False


@dataclass
class _Wanted:
    """A part this process waits for: its message, until when it counts, and its message's
    polls so far."""

    message_id: str
    until: float
    polls: int


def outstanding(message: OutboundMessage) -> tuple[list[str], list[str]]:
    """The Cast ids of the parts with no receipt yet: those the logs list (sent through
    `/sms/send`), and the others (the SIM gateway's)."""
    logged: list[str] = []
    others: list[str] = []
    for part in message.parts:
        if part.dlr is None and part.cast_message_id:
            (logged if (part.channel or "sms") == "sms" else others).append(part.cast_message_id)
    return logged, others


class ReceiptReconciler:
    def __init__(
        self,
        ledgers: ReceiptLedgers,
        cast: LogsReader,
        before_request: Callable[[], Awaitable[None]],
        on_rate_limited: Callable[[float | None], Awaitable[None]],
        sent_since: Callable[[str, float], Awaitable[bool]],
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledgers = ledgers
        self._cast = cast
        self._before_request = before_request  # the pacer's per-IP budget for reads
        self._interval = interval
        self._clock = clock
        self._rate_limited = on_rate_limited  # a 429 to a read: the per-IP budget's
        self._sent_since = sent_since  # the key took a send slot after a time (the pacer's)
        self._locks: dict[str, asyncio.Lock] = {}  # one read of a key at a time here
        self._cached: dict[str, tuple[float, ReceiptLedger]] = {}
        self._wanted: dict[str, dict[str, _Wanted]] = {}  # by key fingerprint, by Cast id

    @property
    def interval(self) -> float:
        return self._interval

    async def look_up(self, api_key: str, message: OutboundMessage) -> Lookup:
        """The message's outstanding parts as the key's logs show them (reading them if this
        round's read is due and no other process claimed it)."""
        logged, others = outstanding(message)
        if not logged:
            return Lookup(by_status=set(others))
        fingerprint = key_fingerprint(api_key)
        if self._lone(fingerprint, message, logged) and not await self._sent_since(
            api_key, message.accepted_at or 0.0
        ):
            return Lookup(by_status={*logged, *others})
        ledger = await self._ledger(api_key, fingerprint)
        lookup = Lookup(by_status=set(others))
        for cast_id in logged:
            entry = ledger.entries.get(cast_id)
            if entry is not None:
                result = StatusResult(
                    message_id=cast_id,
                    status=entry.status,
                    dlr_status=entry.dlr_status,
                    error_message=entry.error_message,
                )
                if classify(result) is Receipt.UNKNOWN:
                    lookup.waiting = True
                else:
                    lookup.settled[cast_id] = result
            elif ledger.failing or message.polls > LOG_ROUNDS:
                lookup.by_status.add(cast_id)
            else:
                lookup.waiting = True
        return lookup

    def _lone(self, fingerprint: str, message: OutboundMessage, cast_ids: list[str]) -> bool:
        """Note that the message waits for `cast_ids`; True when no other message of the key
        waits here (its parts are then asked by status)."""
        now = self._clock()
        wanted = {
            cast_id: want
            for cast_id, want in self._wanted.get(fingerprint, {}).items()
            if want.until > now and want.message_id != message.message_id
        }
        lone = not wanted
        until = now + 2 * self._interval + CACHE_SECONDS
        for cast_id in cast_ids:
            wanted[cast_id] = _Wanted(message.message_id, until, message.polls)
        self._wanted[fingerprint] = wanted
        return lone

    async def _ledger(self, api_key: str, fingerprint: str) -> ReceiptLedger:
        """The key's ledger: this process's copy if under `CACHE_SECONDS` old, else the
        outcome of this round's read (if this process claims it) or the store's copy."""
        async with self._locks.setdefault(fingerprint, asyncio.Lock()):
            now = self._clock()
            cached = self._cached.get(fingerprint)
            if cached is not None and now - cached[0] < min(CACHE_SECONDS, self._interval):
                return cached[1]
            if await self._ledgers.claim_round(fingerprint, now=now, interval=self._interval):
                ledger = await self._read(api_key, fingerprint, now)
            else:
                ledger = await self._ledgers.get(fingerprint)
            self._cached[fingerprint] = (now, ledger)
            return ledger

    async def _read(self, api_key: str, fingerprint: str, now: float) -> ReceiptLedger:
        """Read the key's logs (paged, see the module) into its ledger."""
        looking_for = {
            cast_id
            for cast_id, want in self._wanted.get(fingerprint, {}).items()
            if want.until > now and want.polls <= LOG_ROUNDS
        }
        found: dict[str, LoggedReceipt] = {}
        keep_since = now - KEEP_SECONDS
        try:
            for page in range(MAX_PAGES):
                await self._before_request()
                logs = await self._cast.sms_logs(api_key, limit=LOGS_PAGE, offset=page * LOGS_PAGE)
                for entry in logs.logs:
                    found[entry.id] = _logged(status_of_log(entry), now)
                if len(logs.logs) < LOGS_PAGE or looking_for <= found.keys():
                    break
        except CastError as exc:
            if exc.status == 429:
                await self._rate_limited(exc.retry_after)
            log.warning(
                "could not read a Cast key's message logs: its receipts are asked one by one "
                "until a read works",
                extra={"key": fingerprint, "reason": exc.message},
            )
            return await self._ledgers.merge(
                fingerprint, found, failed_at=now, keep_since=keep_since
            )
        return await self._ledgers.merge(fingerprint, found, read_at=now, keep_since=keep_since)


def _logged(result: StatusResult, now: float) -> LoggedReceipt:
    return LoggedReceipt(
        status=result.status,
        dlr_status=result.dlr_status,
        error_message=result.error_message,
        seen_at=now,
    )
