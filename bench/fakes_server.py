"""Fake Cast and fake GHL (the ones the tests use) in a process of their own, for the benchmarks.

`python -m bench.fakes_server --cast-rate 10` prints one JSON line `{"cast_url", "ghl_url"}` once
both listen, then serves until killed. Extra routes (never part of the real APIs):

- `GET  {cast}/_stats`, `GET {cast}/_sent`: counters and every real send (idempotency key, arrival
  time on the machine's monotonic clock, so another process on this machine can compare);
- `GET  {ghl}/_stats`, `GET {ghl}/_statuses`: status reports received;
- `POST {ghl}/_seed {"location_id"}`: a token pair for a location (to seed the store);
- `POST {cast|ghl}/_fault {"kind": "status"|"stall", "status", "seconds", "stall"}`: for
  `seconds` from now, answer every API request with `status` at once, or (stall) let the fake
  answer but hold the answer back `stall` seconds (the request was handled: a slow answer).
"""

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.devkit.fake_cast import FakeCast, StallWatch
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import CAST_KEY, CLIENT_ID, CLIENT_SECRET, SENDER_ID
from app.devkit.processes import free_port


@dataclass
class Fault:
    kind: str  # "status" or "stall"
    until: float
    status: int = 503
    stall: float = 0.0


class Faults:
    """Time windows of scripted trouble, applied by `FaultMiddleware` to the API routes."""

    def __init__(self) -> None:
        self.windows: list[Fault] = []
        self.injected: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        self.windows.append(fault)

    def active(self, now: float) -> Fault | None:
        self.windows = [w for w in self.windows if w.until > now]
        return self.windows[0] if self.windows else None


class FaultMiddleware:
    def __init__(self, app: ASGIApp, faults: Faults, flavour: str) -> None:
        self.app, self.faults, self.flavour = app, faults, flavour

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            await self.app(scope, receive, send)
            return
        fault = self.faults.active(time.monotonic())
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "stall":
            self.faults.injected[f"stall:{fault.stall:g}s"] += 1
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(fault.stall)
            for message in held:
                await send(message)
            return
        self.faults.injected[str(fault.status)] += 1
        if self.flavour == "cast":
            code = "RATE_LIMIT_EXCEEDED" if fault.status == 429 else "INTERNAL_ERROR"
            body: dict[str, Any] = {"success": False, "error": "chaos", "error_code": code}
        else:
            body = {"message": "chaos", "statusCode": fault.status}
        headers = {"Retry-After": "1"} if fault.status == 429 else None
        response = JSONResponse(body, status_code=fault.status, headers=headers)
        await response(scope, receive, send)


def _fault_route(app: FastAPI, faults: Faults) -> None:
    @app.post("/_fault")
    async def fault(request: Request) -> dict[str, Any]:
        spec = await request.json()
        faults.add(
            Fault(
                kind=spec.get("kind", "status"),
                until=time.monotonic() + float(spec["seconds"]),
                status=int(spec.get("status", 503)),
                stall=float(spec.get("stall", 0.0)),
            )
        )
        return {"ok": True}


def cast_app(cast: FakeCast, faults: Faults) -> ASGIApp:
    app = cast.app

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        keys = Counter(sms["idempotency_key"] for sms in cast.sent)
        answered_ok = sum(1 for r in cast.requests if r.get("status") == 200)
        times = [sms["at"] for sms in cast.sent]
        return {
            "sent": len(cast.sent),
            "unique": len(keys),
            "duplicates": sum(count - 1 for count in keys.values()),
            "replays": answered_ok - len(cast.sent),
            "requests": len(cast.requests),
            "rate_limited": cast.rate_limited,
            "api_calls": dict(cast.api_calls),
            "ip_limited": dict(cast.ip_limited),
            "max_per_second": cast.max_sends_in_any_second(),
            "first_at": min(times, default=None),
            "last_at": max(times, default=None),
            "injected": dict(faults.injected),
            "now": time.monotonic(),
        }

    @app.get("/_limited")
    async def limited() -> list[float]:
        return [r["at"] for r in cast.requests if r.get("status") == 429]

    @app.get("/_sent")
    async def sent() -> list[dict[str, Any]]:
        fields = ("at", "arrived", "earliest", "handled")
        return [{"key": sms["idempotency_key"], **{k: sms[k] for k in fields}} for sms in cast.sent]

    _fault_route(app, faults)
    return FaultMiddleware(app, faults, "cast")


def ghl_app(ghl: FakeGHL, faults: Faults) -> ASGIApp:
    app = ghl.app

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        ids = Counter(s["message_id"] for s in ghl.statuses)
        finals = Counter(s["body"].get("status") for s in ghl.statuses)
        return {
            "statuses": len(ghl.statuses),
            "unique": len(ids),
            "repeated": sum(count - 1 for count in ids.values()),
            "by_status": dict(finals),
            "requests": len(ghl.status_requests),
            "last_at": max((s["at"] for s in ghl.statuses), default=None),
            "rate_limited": ghl.rate_limited,
            "inbound": len(ghl.inbound),
            "injected": dict(faults.injected),
        }

    @app.get("/_statuses")
    async def statuses() -> dict[str, str]:
        return {s["message_id"]: s["body"].get("status") for s in ghl.statuses}

    @app.post("/_seed")
    async def seed(request: Request) -> dict[str, Any]:
        return ghl.issue_pair((await request.json())["location_id"])

    _fault_route(app, faults)
    return FaultMiddleware(app, faults, "ghl")


def bench_keys(count: int) -> list[str]:
    """The Cast keys of a run with `count` keys: the harness's, then made-up ones."""
    return [CAST_KEY, *(f"cast_{i:04d}" + "f" * 60 for i in range(1, count))]


def receipts_route(cast: FakeCast, ghl: FakeGHL) -> None:
    """`GET /_receipts` on the fake Cast: per GHL messageId, when Cast accepted its first part
    and when GHL received its status (one monotonic clock: both fakes share this process)."""

    @cast.app.get("/_receipts")
    async def receipts() -> dict[str, list[float | None]]:
        accepted: dict[str, float] = {}
        for sms in cast.sent:
            message_id = (sms["idempotency_key"] or "").removeprefix("ghl:").split(":")[0]
            accepted.setdefault(message_id, sms["at"])
        reported = {s["message_id"]: s["at"] for s in ghl.statuses}
        return {mid: [at, reported.get(mid)] for mid, at in accepted.items()}


async def serve(args: argparse.Namespace) -> None:
    keys = bench_keys(args.keys)
    cast = FakeCast(
        set(keys),
        per_key_rate=args.cast_rate,
        ip_rate=args.cast_ip_rate,
        ip_burst=args.ip_burst,
        key_limiter=args.key_limiter,
        ip_limiter=args.ip_limiter,
        jitter=args.jitter,
        settle_after=tuple(args.settle_after) if args.settle_after else None,
    )
    cast.stall_watch = StallWatch()  # a request it handles after a stall of this process
    cast.stall_watch.start()  # arrived at some time in it: the limiter does not blame the bridge
    for key in keys:
        cast.approve(key, SENDER_ID)  # a real account lists its approved sender IDs
    limit = (args.ghl_limit, 10.0) if args.ghl_limit else None
    ghl = FakeGHL(CLIENT_ID, CLIENT_SECRET, location_limit=limit)
    receipts_route(cast, ghl)
    servers = []
    for app in (cast_app(cast, Faults()), ghl_app(ghl, Faults())):
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=free_port(),
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        servers.append(uvicorn.Server(config))
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        await asyncio.sleep(0.01)
    cast_port, ghl_port = (server.config.port for server in servers)
    print(
        json.dumps(
            {"cast_url": f"http://127.0.0.1:{cast_port}", "ghl_url": f"http://127.0.0.1:{ghl_port}"}
        ),
        flush=True,
    )
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cast-rate", type=float, default=10.0, help="Cast messages/s per key")
    parser.add_argument("--cast-ip-rate", type=float, default=30.0, help="Cast requests/s per IP")
    parser.add_argument("--ip-burst", type=float, default=50.0, help="Cast per-IP burst")
    parser.add_argument(
        "--key-limiter",
        choices=["sliding", "bucket"],
        default="sliding",
        help="Cast per-key limiter: a sliding 1-s log (the strictest) or a token bucket",
    )
    parser.add_argument(
        "--ip-limiter",
        choices=["sliding", "bucket"],
        default="bucket",
        help="Cast per-IP limiter over all endpoints: a token bucket (rate, burst) or a sliding "
        "1-s log",
    )
    parser.add_argument("--keys", type=int, default=1, help="Cast keys Cast knows (bench_keys)")
    parser.add_argument(
        "--settle-after",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="seconds from a send to its carrier receipt (random in the range); default: at once",
    )
    parser.add_argument("--jitter", type=float, default=0.02, help="Cast arrival jitter, s")
    parser.add_argument(
        "--ghl-limit", type=int, default=0, help="GHL requests per 10 s per location (0: none)"
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
