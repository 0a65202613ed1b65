"""Chaos run: N messages through the bridge while everything around it misbehaves.

    .venv/bin/python -m bench.chaos                       # 2,000 messages, SQLite store
    .venv/bin/python -m bench.chaos --backend mongo-wire  # the mongoeco wire server as MongoDB
    MONGO_URI=mongodb://... .venv/bin/python -m bench.chaos --mongod-pid 1234

While a load generator posts N signed webhooks (each one re-posted until acknowledged, as GHL
redelivers an unacknowledged webhook), a schedule of trouble runs:

- the bridge is killed with SIGKILL twice and restarted at once;
- fake Cast answers a burst of 429 (Retry-After: 1), then 503, then stalls (it sends the SMS but
  holds the answer longer than the bridge's timeout, so the bridge retries a send Cast did);
- fake GHL answers 503 for a while, then 403 ("not downstreamed") for a while;
- the database is unavailable for a few seconds:
  * SQLite (default): another process holds `BEGIN EXCLUSIVE` on the file, so every write waits
    and, past SQLite's busy timeout (10 s), fails: what a locked or stalled disk looks like;
  * `--backend mongo-wire`: the wire server process is frozen (SIGSTOP, then SIGCONT): every
    operation hangs, then server selection times out;
  * MONGO_URI with `--mongod-pid`: that mongod is frozen the same way (without it: skipped).

At the end every messageId must have reached fake Cast exactly once and have a final status at
fake GHL, and nothing may be left pending in the outbox. Sends repeated after a crash or a
timeout are answered by Cast's idempotency replay (X-Idempotency-Key) and are counted: that is
the crash window, absorbed. Prints `lost=0 duplicated=0` (or the counts); exit 1 when not zero.
"""

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from app.devkit.harness import LOCATION, open_store
from app.store import DONE, PENDING
from bench.common import (
    Bridge,
    Fakes,
    StoreSetup,
    machine,
    make_bridge,
    seed_installation,
    signed_webhooks,
)


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.events: list[str] = []
        self.t0 = time.monotonic()
        self.fakes = Fakes.start(cast_rate=args.rate)
        self.store = StoreSetup.create(args.backend, workdir)
        self.bridge: Bridge = make_bridge(
            self.store,
            self.fakes,
            workdir,
            args.rate,
            LEASE_SECONDS=str(args.lease),
            DELIVERY_STATUS_MODE=args.delivery_mode,
        )
        self.answers: Counter[str] = Counter()
        self.acked: set[str] = set()
        self._restart_lock = asyncio.Lock()

    def log(self, what: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {what}"
        self.events.append(line)
        print(line, flush=True)

    # The load: every webhook until acknowledged -----------------------------------------
    async def post_all(self, bodies: list[tuple[str, bytes, str]]) -> None:
        queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)
        interval = 1.0 / self.args.post_rate
        start = time.monotonic()
        sent = 0

        async def one(client: httpx.AsyncClient) -> None:
            nonlocal sent
            while not queue.empty():
                message_id, body, signature = queue.get_nowait()
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * interval - time.monotonic()))
                while True:
                    try:
                        response = await client.post(
                            "/webhooks/ghl/outbound",
                            content=body,
                            headers={
                                "Content-Type": "application/json",
                                "X-GHL-Signature": signature,
                            },
                        )
                        self.answers[str(response.status_code)] += 1
                        if response.status_code in (200, 202):
                            self.acked.add(message_id)
                            break
                    except httpx.HTTPError as exc:
                        self.answers[type(exc).__name__] += 1
                    await asyncio.sleep(0.25)  # GHL redelivers; we do it sooner

        async with httpx.AsyncClient(base_url=self.bridge.url, timeout=30) as client:
            await asyncio.gather(*(one(client) for _ in range(self.args.post_concurrency)))
        self.log(f"all {len(bodies)} webhooks acknowledged; answers seen: {dict(self.answers)}")

    # The trouble -------------------------------------------------------------------------
    async def kill_and_restart(self, nth: int) -> None:
        async with self._restart_lock:
            pid = self.bridge.proc.pid if self.bridge.proc else None
            self.bridge.kill()
            self.log(f"SIGKILL #{nth} of the bridge (pid {pid}); restarting")
            await asyncio.to_thread(self.bridge.start)
            self.log(f"bridge restarted (pid {self.bridge.proc.pid if self.bridge.proc else '-'})")

    def fault(self, target: str, what: str, **spec: Any) -> None:
        self.fakes.fault(target, **spec)
        self.log(f"fake {target}: {what} for {spec['seconds']:g} s")

    async def database_outage(self, seconds: float) -> None:
        if self.store.mongo_proc is not None or self.args.mongod_pid:
            pid = self.store.mongo_proc.pid if self.store.mongo_proc else self.args.mongod_pid
            os.kill(pid, signal.SIGSTOP)
            self.log(f"database frozen (SIGSTOP to pid {pid}) for {seconds:g} s")
            await asyncio.sleep(seconds)
            os.kill(pid, signal.SIGCONT)
            self.log("database resumed (SIGCONT)")
            return
        if self.store.env.get("MONGO_URI"):
            self.log("database outage skipped: MONGO_URI given without --mongod-pid")
            return
        path = Path(self.store.env["DATA_DIR"]) / "cast-ghl.sqlite3"
        held = threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                held.set()
                time.sleep(seconds)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        await asyncio.to_thread(held.wait, 30)
        self.log(f"database locked (BEGIN EXCLUSIVE by another process) for {seconds:g} s")
        await asyncio.to_thread(thread.join)
        self.log("database lock released")

    async def schedule(self) -> None:
        a = self.args
        steps: list[tuple[float, Any]] = [
            (3, lambda: self.kill_and_restart(1)),
            (6, lambda: self._now(self.fault, "cast", "429 burst", status=429, seconds=3)),
            (10, lambda: self._now(self.fault, "cast", "503s", status=503, seconds=3)),
            (14, lambda: self.database_outage(a.db_outage)),
            (16 + a.db_outage, lambda: self.kill_and_restart(2)),
            (
                20 + a.db_outage,
                lambda: self._now(
                    self.fault,
                    "cast",
                    "stalls (answer held 3 s, after sending)",
                    kind="stall",
                    stall=3,
                    seconds=4,
                ),
            ),
            (26 + a.db_outage, lambda: self._now(self.fault, "ghl", "503s", status=503, seconds=5)),
            (32 + a.db_outage, lambda: self._now(self.fault, "ghl", "403s", status=403, seconds=5)),
        ]
        for at, action in steps:
            await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
            await action()

    @staticmethod
    async def _now(fn: Any, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(fn, *args, **kwargs)

    # The end -----------------------------------------------------------------------------
    async def wait_for_statuses(self, ids: set[str]) -> dict[str, str]:
        deadline = time.monotonic() + self.args.timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            self.bridge.sample_rss()
            statuses = await asyncio.to_thread(self.fakes.ghl_statuses)
            if ids <= statuses.keys():
                break
            await asyncio.sleep(1.0)
        return statuses

    async def run(self) -> dict[str, Any]:
        a = self.args
        await seed_installation(self.store.env, self.fakes.seed_pair(LOCATION))
        await asyncio.to_thread(self.bridge.start)
        bodies = signed_webhooks(a.n, f"chaos{int(time.time())}")
        ids = {message_id for message_id, _, _ in bodies}
        self.t0 = time.monotonic()
        self.log(f"posting {a.n} webhooks at {a.post_rate:g}/s; R={a.rate:g}/s")
        await asyncio.gather(self.post_all(bodies), self.schedule())
        statuses = await self.wait_for_statuses(ids)
        self.log(f"{len(ids & statuses.keys())}/{a.n} final statuses at fake GHL")
        self.bridge.stop()
        # Real sends at fake Cast (replays excluded), by idempotency key ghl:<id>:<part>/<parts>.
        sends = Counter(
            sms["key"] for sms in self.fakes.cast_sent() if _message_id(sms["key"]) in ids
        )
        sent_ids = {_message_id(key) for key in sends}
        cast = self.fakes.cast_stats()
        ghl = self.fakes.ghl_stats()
        store_counts = await self.outbox_counts()
        lost = sorted(ids - self.acked) + sorted(self.acked - sent_ids)
        no_status = sorted(ids - statuses.keys())
        return {
            "machine": machine(),
            "store": self.store.label,
            "n": a.n,
            "lost": len(lost),
            "lost_ids": lost[:20],
            "duplicated": sum(count - 1 for count in sends.values() if count > 1),
            "without_final_status": len(no_status),
            "without_final_status_ids": no_status[:20],
            "final_statuses": dict(Counter(statuses[i] for i in ids if i in statuses)),
            "stuck_pending": store_counts.get(PENDING, 0),
            "done": store_counts.get(DONE, 0),
            "crash_window_replays": cast["replays"],
            "cast_requests": cast["requests"],
            "cast_429_from_limits": cast["rate_limited"],
            "cast_injected": cast["injected"],
            "ghl_injected": ghl["injected"],
            "ghl_status_reports_repeated": ghl["repeated"],
            "webhook_answers": dict(self.answers),
            "elapsed_s": time.monotonic() - self.t0,
            "peak_rss_mb": self.bridge.peak_rss_kb / 1024,
            "events": self.events,
        }

    async def outbox_counts(self) -> dict[str, int]:
        store = open_store(self.store.env)
        await store.start()
        try:
            return await store.count_items("outbound")
        finally:
            await store.close()

    def close(self) -> None:
        if self.bridge.proc is not None:
            self.bridge.stop()
        self.fakes.stop()
        self.store.close()


def _message_id(idempotency_key: str | None) -> str:
    parts = (idempotency_key or "").split(":")
    return parts[1] if len(parts) == 3 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages")
    parser.add_argument("--rate", type=float, default=25.0, help="Cast messages/s per key (R)")
    parser.add_argument("--post-rate", type=float, default=60.0, help="webhooks/s offered")
    parser.add_argument("--post-concurrency", type=int, default=16)
    parser.add_argument("--db-outage", type=float, default=12.0, help="seconds without the DB")
    parser.add_argument("--lease", type=float, default=5.0, help="LEASE_SECONDS of the bridge")
    parser.add_argument("--delivery-mode", choices=["carrier", "accepted"], default="carrier")
    parser.add_argument("--backend", choices=["sqlite", "mongo-wire"], default="sqlite")
    parser.add_argument("--mongod-pid", type=int, default=None, help="mongod to freeze")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cast-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(args, workdir)
    try:
        result = asyncio.run(chaos.run())
    finally:
        chaos.close()
    (workdir / "chaos.json").write_text(json.dumps(result, indent=2))
    print()
    print(
        f"store: {result['store']}; {result['n']} messages in {result['elapsed_s']:.0f} s; "
        f"final statuses {result['final_statuses']}; stuck (pending in the outbox): "
        f"{result['stuck_pending']}; without a final status: {result['without_final_status']}"
    )
    print(
        f"crash window: {result['crash_window_replays']} sends repeated after a kill or a "
        f"timeout, answered by Cast's idempotency replay (no second SMS); "
        f"{result['ghl_status_reports_repeated']} status reports repeated to GHL"
    )
    print(
        f"injected: cast {result['cast_injected']}, ghl {result['ghl_injected']}; "
        f"webhook answers {result['webhook_answers']}; peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    print(f"details: {workdir / 'chaos.json'}; bridge log: {workdir / 'bridge.log'}")
    print(f"lost={result['lost']} duplicated={result['duplicated']}")
    bad = result["lost"] or result["duplicated"] or result["stuck_pending"]
    raise SystemExit(1 if bad or result["without_final_status"] else 0)


if __name__ == "__main__":
    main()
