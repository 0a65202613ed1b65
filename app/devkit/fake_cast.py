"""A fake Cast.ph API that speaks real HTTP and behaves like the real one where we depend on it.

- `POST /api/sms/send`, `/api/v1/sms/send` and the SIM gateway's `/api/sim/send`,
  `/api/v1/sim/send`: checks X-API-Key, validates the body, enforces the per-key message rate
  (one budget per key across both channels: the stricter reading of cast-api.md §9) and the
  per-IP request rate (429 + Retry-After), and honours X-Idempotency-Key (replays the first
  successful answer, sends nothing new). The per-key limiter is a token bucket of capacity
  `per_key_rate` (`key_limiter="bucket"`) or the strictest plausible one, a sliding log: at
  most `per_key_rate` sends in ANY 1-s interval (`key_limiter="sliding"`). `jitter` adds up
  to that many seconds of random network delay to each arrival time the limiter sees (the time
  the request reached the handler, not the time it was processed).
- Channels (cast-api.md §2): `/sim/send` needs `sim` in the key's allowed channels (else 403
  CHANNEL_NOT_ALLOWED). A key with approved sender IDs (`approve`) may only send a sender
  through the endpoint of its channel (else 400 VALIDATION_ERROR). A key the test did not
  describe is a Cast that cannot say: any sender ID goes on `/sms/send`, as before, and its
  sender-ID list answers 404.
- Scripted answers (`script`) come first: bursts of 429/5xx/4xx, stalls; one marked
  `after_sending` comes after the send went through (an accepted send whose answer was lost).
- `GET /api/v1/account/unsubscribed`: the key's numbers that used the unsubscribe link
  (`unsubscribe(...)`); a send to one of them from that sender ID is refused. How Cast reports
  that refusal is undocumented (cast-api.md §5.9): the fake answers with the least specific
  shape, `400 VALIDATION_ERROR` and words only (`unsubscribed_refusal` changes it).
- `GET /api/v1/{sms,sim}/status/{id}` answers from `dlr` (scripted statuses), only on the
  channel the message was sent through and for the key (account) that sent it (404 otherwise:
  Cast's idempotency and messages are per account, so the strictest plausible reading). Each
  look at a message (a status request, or a logs page listing it) moves it one step along its
  statuses; with `settle_after`
  (a range of seconds) a message shows only `sent` until its own random time after its send.
- `GET /api/v1/sms/logs` (cast-api.md §5.15), the strictest plausible reading: the key's
  `/sms/send` messages only (not the SIM gateway's), newest first, `limit` 1-500 (default 50)
  and `offset` ≥ 0 or 400 VALIDATION_ERROR, `status=sent|failed`, `from`/`to` as YYYY-MM-DD;
  an entry's `status` is the submission's (`sent`/`failed`), the carrier's receipt is only in
  `dlr_status` (with `delivered_at`). `hidden_from_logs` leaves messages out (a lagging log);
  `logs_errors` answers that many 500s first.
- Per source IP, over ALL endpoints: a token bucket (`ip_rate`, burst `ip_burst`) or, with
  `ip_limiter="sliding"`, at most `ip_rate` requests in ANY 1-s interval; 429 when exceeded.
  `api_calls` counts every request to `/api/...` by kind (`send`, `status`, `logs`, ...).
- `GET /api/v1/account/balance`: `credits` for a known key, 401 otherwise;
  `GET /api/v1/account/sender-ids`: the key's approved sender IDs with their channel;
  `GET /api/v1/account/profile` (`billing_type`, allowed channels) and `/account/usage`
  (`usage_days`, newest first, else today's sends). With `charge` set, each part costs a credit
  and a send the balance cannot pay is refused with 402 INSUFFICIENT_CREDITS (topup) or
  CREDIT_LIMIT_REACHED (postpaid, below `-credit_limit`).
"""

import asyncio
import bisect
import datetime
import itertools
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DEFAULT_CHANNELS = frozenset({"sms", "otp", "bulk"})


@dataclass
class Scripted:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 0.0
    # The send goes through (SMS out, answer kept for its idempotency key), then this answer
    # comes back instead of Cast's: an accepted send whose answer was lost.
    after_sending: bool = False


@dataclass
class Bucket:
    rate: float
    capacity: float
    tokens: float = -1.0
    last: float = 0.0

    def take(self, now: float, earliest: float | None = None) -> bool:  # takes at `now`
        if self.tokens < 0:
            self.tokens, self.last = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + max(now - self.last, 0.0) * self.rate)
        self.last = max(now, self.last)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class SlidingLog:
    """At most `limit` accepted events in any interval of `window` seconds (arrival times may
    come slightly out of order when jitter is added). An event whose arrival is only known to
    lie between `earliest` and `now` (see `StallWatch`) is checked at `now` and remembered at
    `earliest`: the benefit of the doubt both ways."""

    limit: int
    window: float = 1.0
    times: list[float] = field(default_factory=list)

    def take(self, now: float, earliest: float | None = None) -> bool:
        times = self.times
        while times and now - times[0] >= 2 * self.window:
            times.pop(0)
        at = bisect.bisect(times, now)
        candidate = [*times[:at], now, *times[at:]]
        for first in range(max(0, at - self.limit), at + 1):
            last = first + self.limit
            if last < len(candidate) and candidate[last] - candidate[first] < self.window:
                return False
        remembered = now if earliest is None else earliest
        times.insert(bisect.bisect(times, remembered), remembered)
        return True


class StallWatch:
    """When this process did not run (its event loop did not tick for more than `gap`: a busy
    machine did not schedule it). A request it handles during or just after such a stall
    arrived at some time in it, which the fake cannot know: `earliest` says since when. Only
    for a fake in a process of its own (`start` from its server's loop)."""

    def __init__(self, tick: float = 0.005, gap: float = 0.015) -> None:
        self.tick, self.gap = tick, gap
        self.last = time.monotonic()
        self.stalls: deque[tuple[float, float]] = deque(maxlen=64)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.tick)
            self.last = time.monotonic()
            if self.last - before > self.gap:
                self.stalls.append((before, self.last))

    def earliest(self, stamp: float) -> float:
        if stamp - self.last > self.gap:  # stalled, and the watch has not run since
            return self.last
        for start, end in reversed(self.stalls):
            if start <= stamp <= end + self.gap:
                return start
        return stamp


class KeyLimiter:
    """The per-key (or per-IP) limiter of one fake Cast: a token bucket of capacity `burst`
    (default: the rate) or a sliding log."""

    def __init__(self, kind: str, rate: float, burst: float | None = None) -> None:
        if kind not in ("bucket", "sliding"):
            raise ValueError(f"unknown limiter {kind!r}")
        self.kind, self.rate, self.burst = kind, rate, burst or rate

    def new(self) -> Bucket | SlidingLog:
        if self.kind == "sliding":
            return SlidingLog(max(1, int(self.rate)))
        return Bucket(self.rate, self.burst)


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any interval of `window` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class FakeCast:
    def __init__(
        self,
        api_keys: set[str],
        *,
        per_key_rate: float = 10.0,
        ip_rate: float = 30.0,
        ip_burst: float = 50.0,
        key_limiter: str = "bucket",
        ip_limiter: str = "bucket",
        jitter: float = 0.0,
        settle_after: tuple[float, float] | None = None,
    ) -> None:
        self.api_keys = api_keys
        self.per_key_rate = per_key_rate
        self.key_limiter = KeyLimiter(key_limiter, per_key_rate)
        self.jitter = jitter
        self.stall_watch: StallWatch | None = None  # set by a fake in a process of its own
        self.ip_rate, self.ip_burst = ip_rate, ip_burst
        self.ip_limiter = KeyLimiter(ip_limiter, ip_rate, ip_burst)
        self.settle_after = settle_after  # (min, max) seconds from a send to its receipt
        self.script: deque[Scripted] = deque()
        self.sent: list[dict[str, Any]] = []  # SMS that really went out (not replays)
        self.requests: list[dict[str, Any]] = []  # every send request, with our answer
        self.rate_limited = 0
        self.dlr: dict[str, deque[dict[str, Any]]] = {}
        self.default_dlr: list[dict[str, Any]] = [{"status": "delivered", "dlr_status": "DELIVRD"}]
        self.next_dlr: deque[list[dict[str, Any]]] = deque()  # DLR sequences for the next sends
        self.status_errors = 0  # the status endpoint answers this many 500s first
        self.status_requests: list[str] = []
        self.logs_requests: list[dict[str, str]] = []  # the query of every logs request
        self.logs_errors = 0  # the logs endpoint answers this many 500s first
        self.hidden_from_logs: set[str] = set()  # message ids the logs never list
        self.api_calls: Counter[str] = Counter()  # every request to /api/..., by kind
        self.ip_limited: Counter[str] = Counter()  # 429s of the per-IP limit, by kind
        self.credits = 1000  # GET /api/v1/account/balance
        self.charge = False  # each part costs a credit; 402 when the balance cannot pay
        self.billing_type = "topup"
        self.credit_limit = 0  # postpaid: how far below zero credits may go
        self.usage_days: list[dict[str, Any]] | None = None  # GET /api/v1/account/usage
        self.unsubscribed: dict[str, list[dict[str, Any]]] = {}  # key -> list entries
        self.unsubscribed_requests: list[str] = []  # the key of every list request
        self.unsubscribed_refusal = (400, "VALIDATION_ERROR", "Recipient has unsubscribed")
        self.senders: dict[str, list[dict[str, Any]]] = {}  # key -> approved sender IDs
        self.allowed_channels: dict[str, set[str]] = {}  # key -> channels (default: no sim)
        self.account_requests: list[str] = []  # paths of GET /api/v1/account/... calls
        self.refused_account_requests: list[str] = []  # the same, refused for the key (401)
        self._channel_of: dict[str, str] = {}  # message id -> channel it was sent through
        self._key_of: dict[str, str] = {}  # message id -> the key (account) that sent it
        self._idempotent: dict[tuple[str, str], dict[str, Any]] = {}
        self._key_limits: dict[str, Bucket | SlidingLog] = {}
        self._ip_limits: dict[str, Bucket | SlidingLog] = {}
        self._settles_at: dict[str, float] = {}  # message id -> when its receipt is known
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build_app()

    # Helpers for tests --------------------------------------------------------------------
    def fail_next(
        self, count: int, status: int, code: str = "INTERNAL_ERROR", **kwargs: Any
    ) -> None:
        kwargs.setdefault(
            "body", {"success": False, "error": f"scripted {status}", "error_code": code}
        )
        for _ in range(count):
            self.script.append(Scripted(status, **kwargs))

    def unsubscribe(
        self, key: str, phone: str, sender_id: str | None, at: str = "2026-12-01T08:00:00Z"
    ) -> None:
        """As if `phone` had used Cast's one-click link for `sender_id` of `key`'s account."""
        entry = {"phone": phone, "sender_id": sender_id, "unsubscribed_at": at, "ip": None}
        self.unsubscribed.setdefault(key, []).append(entry)

    def _is_unsubscribed(self, key: str, to: str, sender_id: str | None) -> bool:
        return any(
            _national(entry["phone"]) == _national(to)
            and (sender_id is None or entry["sender_id"] in (None, sender_id))
            for entry in self.unsubscribed.get(key, [])
        )

    def approve(
        self, key: str, sender_id: str, channel: str = "sms", *, enable_channel: bool = True
    ) -> None:
        """Approve `sender_id` for `channel` on `key`; a `sim` sender also enables the SIM
        gateway for the key unless `enable_channel` is False (the 403 case)."""
        self.senders.setdefault(key, []).append(
            {"sender_id": sender_id, "label": sender_id, "channel": channel}
        )
        if enable_channel:
            self.channels_of(key).add(channel)

    def channels_of(self, key: str) -> set[str]:
        return self.allowed_channels.setdefault(key, set(DEFAULT_CHANNELS))

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [sms for sms in self.sent if sms["to"] == to]

    def max_sends_in_any_second(self) -> int:
        return max_in_any_window([sms["at"] for sms in self.sent])

    def ip_refused(
        self, host: str, now: float, earliest: float | None = None, kind: str = "send"
    ) -> bool:
        """Take one request of `host` from its per-IP budget; True (counted, by the request's
        kind in `ip_limited`) when over it."""
        limit = self._ip_limits.get(host)
        if limit is None:
            limit = self._ip_limits[host] = self.ip_limiter.new()
        if limit.take(now, earliest):
            return False
        self.rate_limited += 1
        self.ip_limited[kind] += 1
        return True

    def _look(self, message_id: str) -> dict[str, Any]:
        """The message's status now, one step further along its script (see the module)."""
        if time.monotonic() < self._settles_at.get(message_id, 0.0):
            return {"status": "sent"}
        steps = self.dlr[message_id]
        return steps[0] if len(steps) == 1 else steps.popleft()

    # The HTTP app ------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def per_ip(request: Request, call_next: Any) -> Any:
            """Count every API request; the per-IP limit for all but sends (which check it
            with the network's jitter, in `_answer`)."""
            path = request.url.path
            if not path.startswith("/api/"):
                return await call_next(request)
            kind = _kind(path)
            self.api_calls[kind] += 1
            if kind != "send":
                now = time.monotonic()
                watch = self.stall_watch  # as for sends: a stall of this process is not theirs
                earliest = watch.earliest(now) if watch is not None else None
                with self._lock:
                    refused = self.ip_refused(_host(request), now, earliest, kind)
                if refused:
                    return _error(429, "RATE_LIMIT_EXCEEDED", "too many requests", retry_after=1)
            return await call_next(request)

        for channel in ("sms", "sim"):

            async def send(request: Request, channel: str = channel) -> JSONResponse:
                return await self._send(request, channel)

            app.add_api_route(f"/api/{channel}/send", send, methods=["POST"])
            app.add_api_route(f"/api/v1/{channel}/send", send, methods=["POST"])

        @app.get("/api/v1/account/balance")
        async def balance(request: Request) -> JSONResponse:
            if self._known_key(request) is None:
                self.refused_account_requests.append("balance")
                return _invalid_key()
            self.account_requests.append("balance")
            return JSONResponse({"success": True, "credits": self.credits, "currency": "PHP"})

        @app.get("/api/v1/account/unsubscribed")
        async def unsubscribed(request: Request) -> JSONResponse:
            if (key := self._known_key(request)) is None:
                return _invalid_key()
            self.unsubscribed_requests.append(key)
            return JSONResponse({"success": True, "data": self.unsubscribed.get(key, [])})

        @app.get("/api/v1/account/profile")
        async def profile(request: Request) -> JSONResponse:
            if (key := self._known_key(request)) is None:
                self.refused_account_requests.append("profile")
                return _invalid_key()
            self.account_requests.append("profile")
            return JSONResponse(
                {
                    "success": True,
                    "id": 1,
                    "name": "Test account",
                    "credits": self.credits,
                    "billing_type": self.billing_type,
                    "allowed_channels": sorted(self.channels_of(key)),
                    "is_active": True,
                }
            )

        @app.get("/api/v1/account/usage")
        async def usage(request: Request) -> JSONResponse:
            if (key := self._known_key(request)) is None:
                self.refused_account_requests.append("usage")
                return _invalid_key()
            self.account_requests.append("usage")
            daily = self.usage_days if self.usage_days is not None else self._today(key)
            return JSONResponse(
                {
                    "success": True,
                    "from": request.query_params.get("from"),
                    "to": request.query_params.get("to"),
                    "total": sum(d["total"] for d in daily),
                    "total_sent": sum(d["sent"] for d in daily),
                    "total_failed": sum(d["failed"] for d in daily),
                    "total_parts": sum(d["parts"] for d in daily),
                    "daily": daily,
                }
            )

        @app.get("/api/v1/account/sender-ids")
        async def sender_ids(request: Request) -> JSONResponse:
            if (key := self._known_key(request)) is None:
                self.refused_account_requests.append("sender-ids")
                return _invalid_key()
            self.account_requests.append("sender-ids")
            if key not in self.senders:
                return _error(404, "NOT_FOUND", "no sender IDs to list")
            return JSONResponse({"success": True, "sender_ids": self.senders[key]})

        @app.get("/api/v1/{channel}/status/{message_id}")
        async def status(channel: str, message_id: str, request: Request) -> JSONResponse:
            if self._known_key(request) is None:
                return _invalid_key()
            self.status_requests.append(message_id)
            if self.status_errors > 0:
                self.status_errors -= 1
                return _error(500, "INTERNAL_ERROR", "scripted status error")
            if (
                message_id not in self.dlr
                or self._channel_of.get(message_id) != channel
                or self._key_of.get(message_id) != self._known_key(request)
            ):  # another account's message is not found (strictest plausible)
                return _error(404, "NOT_FOUND", "message not found")
            return JSONResponse(
                {"success": True, "message_id": message_id, **self._look(message_id)}
            )

        @app.get("/api/v1/sms/logs")
        async def logs(request: Request) -> JSONResponse:
            if (key := self._known_key(request)) is None:
                return _invalid_key()
            query = dict(request.query_params)
            self.logs_requests.append(query)
            if self.logs_errors > 0:
                self.logs_errors -= 1
                return _error(500, "INTERNAL_ERROR", "scripted logs error")
            try:
                entries = self._logs(key, query)
            except ValueError as exc:
                return _error(400, "VALIDATION_ERROR", str(exc))
            return JSONResponse({"success": True, "count": len(entries), "logs": entries})

        return app

    def _logs(self, key: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """One page of the key's `/sms/send` messages, newest first (ValueError: a bad query)."""
        limit = _bounded_int(query.get("limit", "50"), "limit", 1, LOGS_LIMIT)
        offset = _bounded_int(query.get("offset", "0"), "offset", 0, None)
        status = query.get("status")
        if status not in (None, "sent", "failed"):
            raise ValueError("status must be sent or failed")
        since, until = _day(query.get("from"), "from"), _day(query.get("to"), "to")
        search = query.get("search") or ""
        listed = [
            sms
            for sms in reversed(self.sent)
            if sms["key"] == key
            and sms["channel"] == "sms"
            and sms["message_id"] not in self.hidden_from_logs
            and (since is None or sms["created_at"][:10] >= since)
            and (until is None or sms["created_at"][:10] <= until)
            and (search in sms["to"] or search in sms["message"])
        ]
        entries = [self._log_entry(sms) for sms in listed]
        if status is not None:
            entries = [entry for entry in entries if entry["status"] == status]
        return entries[offset : offset + limit]

    def _log_entry(self, sms: dict[str, Any]) -> dict[str, Any]:
        step = self._look(sms["message_id"])
        failed = step.get("status") == "failed"
        entry = {
            "id": sms["message_id"],
            "message_type": "sms",
            "sender_id": sms["sender_id"],
            "destination": "+63" + _national(sms["to"]),
            "message": sms["message"],
            "smpp_message_id": f"smpp-{sms['message_id']}",
            "status": "failed" if failed else "sent",
            "parts": _parts(str(sms["message"])),
            "created_at": sms["created_at"],
        }
        dlr = step.get("dlr_status") or _DLR_OF_STATUS.get(step.get("status", ""))
        if dlr is not None and not failed:
            entry["dlr_status"] = dlr
            if dlr == "DELIVRD":
                entry["delivered_at"] = _iso_now()
        if failed and step.get("error_message"):
            entry["error_message"] = step["error_message"]
        return entry

    async def _send(self, request: Request, channel: str) -> JSONResponse:
        now = time.monotonic()
        key = request.headers.get("x-api-key", "")
        idem = request.headers.get("x-idempotency-key")
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = {
            "at": now,
            "key": key,
            "idempotency_key": idem,
            "body": body,
            "channel": channel,
        }
        self.requests.append(record)
        answer = self._answer(key, idem, body, channel, now, _host(request))
        if isinstance(answer, Scripted):
            record["status"] = answer.status
            if answer.stall_seconds:
                await asyncio.sleep(answer.stall_seconds)
            return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
        record["status"] = answer.status_code
        return answer

    def _known_key(self, request: Request) -> str | None:
        """The request's API key if Cast knows it."""
        key = request.headers.get("x-api-key", "")
        return key if key in self.api_keys else None

    def _answer(
        self, key: str, idem: str | None, body: Any, channel: str, arrived: float, host: str
    ) -> JSONResponse | Scripted:
        with self._lock:
            # when the request arrived, plus the network's jitter (not when this process got
            # round to it: the fake's own lag would add to the jitter it models)
            jitter = random.uniform(0.0, self.jitter)
            now = arrived + jitter
            watch = self.stall_watch
            earliest = watch.earliest(arrived) + jitter if watch is not None else now
            if self.ip_refused(host, now, earliest):
                return _error(429, "RATE_LIMIT_EXCEEDED", "too many requests", retry_after=1)
            if key not in self.api_keys:
                return _invalid_key()
            if idem and (key, idem) in self._idempotent:
                return JSONResponse(
                    self._idempotent[(key, idem)], headers={"X-Idempotent-Replay": "true"}
                )
            scripted = self.script[0] if self.script else None
            if scripted is not None and not scripted.after_sending:
                return self.script.popleft()
            if channel not in self.channels_of(key):
                return _error(403, "CHANNEL_NOT_ALLOWED", f"the {channel} channel is not enabled")
            if key not in self._key_limits:
                self._key_limits[key] = self.key_limiter.new()
            if not self._key_limits[key].take(now, earliest):
                self.rate_limited += 1
                return _error(429, "RATE_LIMIT_EXCEEDED", "message rate exceeded", retry_after=1)
            if not isinstance(body, dict) or not body.get("to") or not body.get("message"):
                return _error(400, "VALIDATION_ERROR", "to and message are required")
            to = str(body["to"])
            if not (7 <= len(to) <= 20):
                return _error(400, "VALIDATION_ERROR", "invalid phone number")
            if self._is_unsubscribed(key, to, body.get("sender_id")):
                return _error(*self.unsubscribed_refusal)
            refused = self._sender_refused(key, channel, body.get("sender_id"))
            if refused is not None:
                return refused
            parts = _parts(str(body["message"]))
            unpaid = self._unpaid(parts)
            if unpaid is not None:
                return unpaid
            message_id = f"CAST{next(self._ids):08d}"
            answer = {"success": True, "message_id": message_id, "parts": parts}
            self.sent.append(
                {
                    "at": now,
                    "arrived": arrived,
                    "earliest": earliest - jitter,
                    "handled": time.monotonic(),
                    "to": to,
                    "message": body["message"],
                    "sender_id": body.get("sender_id"),
                    "channel": channel,
                    "key": key,
                    "idempotency_key": idem,
                    "message_id": message_id,
                    "created_at": _iso_now(),
                }
            )
            if self.settle_after is not None:
                self._settles_at[message_id] = time.monotonic() + random.uniform(*self.settle_after)
            self.dlr[message_id] = deque(
                self.next_dlr.popleft() if self.next_dlr else self.default_dlr
            )
            self._channel_of[message_id] = channel
            self._key_of[message_id] = key
            if idem:
                self._idempotent[(key, idem)] = answer
            if scripted is not None:
                return self.script.popleft()
            return JSONResponse(answer)

    def _unpaid(self, parts: int) -> JSONResponse | None:
        if not self.charge:
            return None
        floor = -self.credit_limit if self.billing_type == "postpaid" else 0
        if self.credits - parts < floor:
            if self.billing_type == "postpaid":
                return _error(402, "CREDIT_LIMIT_REACHED", "credit limit reached")
            return _error(402, "INSUFFICIENT_CREDITS", f"insufficient credits: need {parts}")
        self.credits -= parts
        return None

    def _today(self, key: str) -> list[dict[str, Any]]:
        mine = [sms for sms in self.sent if sms["key"] == key]
        if not mine:
            return []
        parts = sum(_parts(str(sms["message"])) for sms in mine)
        day = time.strftime("%Y-%m-%d", time.gmtime())
        return [{"date": day, "total": len(mine), "sent": len(mine), "failed": 0, "parts": parts}]

    def _sender_refused(self, key: str, channel: str, sender_id: Any) -> JSONResponse | None:
        """400 unless the key's sender ID (or, when none is given, its first one) is approved
        for `channel`; None for a key with no described senders (any sender, `sms` only)."""
        approved = self.senders.get(key)
        if approved is None:
            return None
        here = [s["sender_id"] for s in approved if s["channel"] == channel]
        if (sender_id is None and here) or sender_id in here:
            return None
        return _error(
            400,
            "VALIDATION_ERROR",
            f"sender_id {sender_id!r} is not approved for the {channel} channel",
        )


LOGS_LIMIT = 500
_DLR_OF_STATUS = {"delivered": "DELIVRD", "undelivered": "UNDELIV", "pending": "ACCEPTD"}
_KINDS = {"send": "send", "bulk": "send", "status": "status", "logs": "logs"}


def _kind(path: str) -> str:
    """`send`, `status`, `logs`, or the account endpoint's name (`balance`, ...)."""
    parts = [p for p in path.split("/") if p not in ("", "api", "v1")]
    if len(parts) >= 2 and parts[1] in _KINDS:
        return _KINDS[parts[1]]
    return parts[-1] if parts else "other"


def _host(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _bounded_int(value: str, name: str, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be between {low} and {high}" if high else f"{name} < {low}")
    return number


def _day(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{name} must be a date, YYYY-MM-DD") from None


def _iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _national(phone: str) -> str:
    """A PH mobile number in any format -> its 10 national digits (9XXXXXXXXX)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[-10:]


def _parts(text: str) -> int:
    unicode = any(ord(ch) > 127 for ch in text)
    single, multi = (70, 67) if unicode else (160, 153)
    return 1 if len(text) <= single else -(-len(text) // multi)


def _invalid_key() -> JSONResponse:
    return _error(401, "INVALID_API_KEY", "invalid API key")


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"success": False, "error": message, "error_code": code},
        status_code=status,
        headers=headers,
    )
