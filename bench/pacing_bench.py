"""Pacing under the strictest limiters (issue 20): Cast's sliding 1-s log per key with jitter,
GHL's 100 requests per 10 s per location, carrier-receipt mode.

    .venv/bin/python -m bench.pacing_bench --n 10000 --rate 10 --replicas 1   # ~17 min
    .venv/bin/python -m bench.pacing_bench --n 600 --rate 10 --replicas 3
    .venv/bin/python -m bench.pacing_bench --n 600 --rate 10 --real-rate 8    # adaptation

One fake Cast + fake GHL process (`bench.fakes_server --key-limiter sliding --jitter 0.02
--ghl-limit 100`), `--replicas` bridges on one SQLite store (GHL_REQUESTS_PER_10S=100,
DELIVERY_STATUS_MODE=carrier), N signed webhooks posted round-robin as fast as they are
acknowledged, and `--replies` inbound SMS to the same location spread over the sending time
(each a contact look-up and an inbound message at GHL, sharing the location's 100 per 10 s).
Reports, per run: the achieved rate (sends - 1 over first-to-last send) / R, the most sends in
any 1-s window at Cast, 429s from Cast and from GHL, and the seconds from the last send to the
last status at GHL. With `--real-rate` below `--rate`, Cast enforces the lower rate
and the run also reports when the rate settled (the last 429) and the rate after it.
"""

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.devkit.fake_cast import max_in_any_window
from app.devkit.harness import LOCATION
from bench.common import Fakes, StoreSetup, make_bridge, seed_installation, signed_webhooks


async def post_all(urls: list[str], bodies: list[tuple[str, bytes, str]]) -> None:
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
    try:
        for start in range(0, len(bodies), 50):
            chunk = list(enumerate(bodies[start : start + 50], start))
            answers = await asyncio.gather(
                *(
                    clients[i % len(clients)].post(
                        "/webhooks/ghl/outbound",
                        content=body,
                        headers={"Content-Type": "application/json", "X-GHL-Signature": sig},
                    )
                    for i, (_, body, sig) in chunk
                )
            )
            assert all(a.status_code == 202 for a in answers), [a.text for a in answers][:3]
    finally:
        for client in clients:
            await client.aclose()


INBOUND_KEY = "bench-inbound-key-0c4e"
REPLY_FROM = ("09171234567", "09181234567", "09051234567")


async def post_replies(urls: list[str], count: int, over: float) -> None:
    """`count` inbound SMS (replies) to the location, spread evenly over `over` seconds."""
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(count):
            sender = REPLY_FROM[i % len(REPLY_FROM)]
            body = {"id": f"reply-{i}", "from": sender, "to": "CASTTEST", "message": "OK"}
            answer = await client.post(
                f"{urls[i % len(urls)]}/webhooks/cast/inbound",
                json=body,
                headers={"X-API-Key": INBOUND_KEY},
            )
            assert answer.status_code == 202, answer.text
            await asyncio.sleep(over / max(count, 1))


def summary(n: int, rate: float, sent: list[dict[str, Any]], cast: dict, ghl: dict) -> dict:
    times = sorted(s["at"] for s in sent)
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    gaps = sorted((b - a, round(a - times[0], 1)) for a, b in itertools.pairwise(times))
    return {
        "longest_gaps_s": [(round(g, 2), at) for g, at in gaps[-5:]],
        "messages": n,
        "achieved_per_s": round(achieved, 3),
        "achieved_of_r": round(achieved / rate, 4),
        "max_sends_in_any_1s": max_in_any_window(times),
        "cast_429": cast["rate_limited"],
        "ghl_429": ghl["rate_limited"],
        "duplicates": cast["duplicates"],
        "statuses": ghl["statuses"],
        "replies_in_ghl": ghl["inbound"],
        "last_status_after_last_send_s": round(ghl["last_at"] - times[-1], 1),
        "send_span_s": round(times[-1] - times[0], 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pacing-bench-"))
    real = args.real_rate or args.rate
    fakes = Fakes.start(real, 30.0, 50.0, "--jitter", str(args.jitter), "--ghl-limit", "100")
    store = StoreSetup.create(getattr(args, "backend", "sqlite"), workdir)
    bridges = []
    try:
        await seed_installation(store.env, fakes.seed_pair(LOCATION))
        for n in range(args.replicas):
            bridge = make_bridge(
                store,
                fakes,
                workdir,
                args.rate,
                DELIVERY_STATUS_MODE="carrier",
                GHL_REQUESTS_PER_10S="100",
                DLR_FIRST_POLL_SECONDS="5",
                DLR_MAX_POLL_INTERVAL_SECONDS="30",
                DLR_LOGS_INTERVAL_SECONDS="10",  # the default (the tests' 0.5 s: 4,678 reads)
                INBOUND_API_KEY=INBOUND_KEY,
                INBOUND_ROUTES=json.dumps({"CASTTEST": LOCATION}),
            )
            bridge.log_path = workdir / f"bridge-{n}.log"
            bridge.start()
            bridges.append(bridge)
        bodies = signed_webhooks(args.n, f"pace{int(time.time())}")
        started = time.monotonic()
        await post_all([b.url for b in bridges], bodies)
        replies = asyncio.create_task(
            post_replies([b.url for b in bridges], args.replies, args.n / args.rate)
        )
        deadline = started + args.n / args.rate * 1.6 + 300
        while time.monotonic() < deadline:
            ghl = fakes.ghl_stats()
            if ghl["unique"] >= args.n and ghl["inbound"] >= args.replies:
                break
            await asyncio.sleep(2)
        await replies
        cast, ghl, sent = fakes.cast_stats(), fakes.ghl_stats(), fakes.cast_sent()
        if args.dump:
            limited = fakes.http.get(f"{fakes.cast_url}/_limited").json()
            Path(args.dump).write_text(json.dumps({"sent": sent, "limited": limited}))
        result = summary(args.n, real, sent, cast, ghl)
        result.update(
            replicas=args.replicas, configured_rate=args.rate, real_rate=real, store=store.label
        )
        if args.real_rate:
            result.update(settling(sent, fakes))
        return result
    finally:
        for bridge in bridges:
            bridge.stop()
        fakes.stop()
        store.close()


def settling(sent: list[dict[str, Any]], fakes: Fakes) -> dict[str, Any]:
    """When the last 429 came, and the rate at Cast after it."""
    requests = fakes.http.get(f"{fakes.cast_url}/_stats").json()
    times = sorted(s["at"] for s in sent)
    limited = fakes.http.get(f"{fakes.cast_url}/_limited").json()
    last = max(limited, default=times[0])
    after = [t for t in times if t > last]
    rate_after = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 else None
    return {
        "last_429_after_first_send_s": round(last - times[0], 1),
        "rate_after_last_429": round(rate_after, 3) if rate_after else None,
        "max_sends_in_any_1s_after_last_429": max_in_any_window(after),
        "cast_requests": requests["requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0, help="CAST_RATE_PER_KEY (R)")
    parser.add_argument("--real-rate", type=float, default=0.0, help="Cast's real per-key rate")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--jitter", type=float, default=0.02)
    parser.add_argument("--dump", help="write every send and 429 seen by the fake Cast here")
    parser.add_argument("--backend", choices=["sqlite", "mongo-wire"], default="sqlite")
    parser.add_argument(
        "--replies", type=int, default=0, help="inbound SMS to the location, spread over the run"
    )
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
