"""The bridge as a whole, on loopback: ingest, pacing, end-to-end latency, memory.

    .venv/bin/python -m bench.run_bench --n 5000 --c 64            # a few minutes at R=10
    .venv/bin/python -m bench.run_bench --n 10000 --c 64 --rate 10 # the published run (~18 min)

    .venv/bin/python -m bench.run_bench --n 40000 --c 16 --duration 10 --ingest-only \
        --profile /tmp/p.txt                                       # issue 19's measurement
    .venv/bin/python -m bench.run_bench --pacing 600               # issue 20's runs (~6 min)

Three processes besides this one: the bridge (`python -m app`), fake Cast + fake GHL
(`bench.fakes_server`) and the load generator (`wrk`, one thread, pre-signed bodies). Phases:

1. latency: K webhooks on the idle bridge, spaced 2/R apart so pacing never waits; for each, the
   time from the load generator sending it to fake Cast receiving the send (one monotonic clock,
   one machine);
2. ingest: N signed ProviderOutboundMessage webhooks at concurrency C (for at most `--duration`
   seconds); wrk reports the acknowledged rate and the ack latency percentiles, /proc the
   bridge's CPU time per webhook, and with `--profile` py-spy splits it by stage;
3. drain (not with `--ingest-only`): until fake Cast has every message and fake GHL every
   status; fake Cast enforces Cast's per-key rate R and per-IP limits (429 when exceeded);
4. baseline: a bare FastAPI app (reads the body, answers 202) under stock uvicorn (uvloop,
   httptools), same wrk, same bodies: the yardstick.

With `--pacing N`, instead: the pacing runs of issue 20 (`bench/pacing_bench.py`: fake Cast's
strictest per-key limiter, a sliding 1-s log with 20 ms of jitter; fake GHL's 100 requests per
10 s per location; carrier receipts; N/20 replies to the location), N messages each: one
bridge, three bridges on one store, and a key configured at R whose real limit at Cast is
0.8 R. Each reports the achieved rate / R, the most sends in any 1-s window, 429s from Cast and
from GHL, and the seconds from the last send to the last status at GHL.

The store is SQLite unless MONGO_URI is set (a real MongoDB) or `--backend mongo-wire`.
Results go to stdout and to `<workdir>/results.json`.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.devkit.harness import LOCATION
from app.devkit.processes import free_port, stop
from bench import pacing_bench
from bench.common import (
    Bridge,
    Fakes,
    StoreSetup,
    machine,
    make_bridge,
    percentile,
    proc_cpu_seconds,
    seed_installation,
    signed_webhooks,
    write_bodies,
)
from bench.profile_summary import stage_lines, stage_shares
from tests.support import ROOT

LUA = ROOT / "bench" / "wrk_post.lua"
TARGETS = {
    "ingest_per_s": 1500,
    "ack_p99_ms": 50,
    "cast_time_factor": 1.03,
    "added_latency_p50_ms": 5,
    "added_latency_p99_ms": 15,
    "cpu_us_per_webhook": 250,
    "baseline_fraction": 0.30,
    "rss_mb": 150,
}


def run_wrk(
    url: str,
    bodies_file: Path,
    n: int,
    c: int,
    threads: int,
    server_pid: int,
    duration: int | None = None,
) -> dict[str, Any]:
    """Fire the first `n` bodies of `bodies_file` at `url` with wrk; stop once all are answered
    or, given `duration`, after that many seconds (whichever comes first).

    Also measures the CPU time the server process used meanwhile (per request: a figure that
    other work on the machine hardly changes, unlike the rate)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    done = bodies_file.with_suffix(".done")
    flags = [done.with_name(f"{done.name}.{tid}") for tid in range(threads)]
    for flag in flags:
        flag.unlink(missing_ok=True)
    if duration is None:
        duration = max(30, int(n / 100) + 30)  # an upper bound: wrk is stopped once all answered
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{c}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(bodies_file),
        str(n),
        str(threads),
        str(done),
    ]
    cpu_before = proc_cpu_seconds(server_pid)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not all(flag.exists() for flag in flags):
        time.sleep(0.02)
    cpu = proc_cpu_seconds(server_pid) - cpu_before
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    line = next((line for line in out.splitlines() if line.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out}\n{err}")
    result = json.loads(line.removeprefix("WRKJSON "))
    result["per_s"] = result["requests"] / (result["elapsed_us"] / 1e6)
    result["server_cpu_s"] = cpu
    result["server_cpu_us_per_request"] = cpu / max(1, result["requests"]) * 1e6
    return result


def start_profiler(bridge: Bridge, out: Path) -> subprocess.Popen[str]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    assert bridge.proc is not None
    cmd = [py_spy, "record", "--pid", str(bridge.proc.pid), "--rate", "250", "--nonblocking"]
    proc = subprocess.Popen(
        [*cmd, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # let py-spy attach
    return proc


def stop_profiler(proc: subprocess.Popen[str], out: Path) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    print(f"  profile: {out} (summarise: python -m bench.profile_summary {out})")


def wait_drained(fakes: Fakes, bridge: Bridge, n: int, timeout: float) -> tuple[dict, dict]:
    deadline = time.monotonic() + timeout
    while True:
        bridge.sample_rss()
        cast, ghl = fakes.cast_stats(), fakes.ghl_stats()
        if (cast["unique"] >= n and ghl["unique"] >= n) or time.monotonic() > deadline:
            return cast, ghl
        time.sleep(0.5)


async def latency_phase(
    bridge: Bridge, fakes: Fakes, samples: int, spacing: float
) -> dict[str, Any]:
    """Webhooks one at a time over one keep-alive connection, each written with a single
    `write` of pre-built bytes (TCP_NODELAY): the send time is taken right before the bytes go
    out, so no client library overhead counts as the bridge's."""
    bodies = signed_webhooks(samples, "lat")
    sent_at: dict[str, float] = {}
    acks: list[float] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        start = time.monotonic()
        for i, (message_id, body, signature) in enumerate(bodies):
            request = (
                "POST /webhooks/ghl/outbound HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                f"X-GHL-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            await asyncio.sleep(max(0.0, start + i * spacing - time.monotonic()))
            t = time.monotonic()
            writer.write(request)
            status = await _read_response(reader)
            acks.append(time.monotonic() - t)
            assert status == 202, status
            sent_at[f"ghl:{message_id}:1/1"] = t
    finally:
        writer.close()
    deadline = time.monotonic() + 30
    arrived: dict[str, float] = {}
    while time.monotonic() < deadline and len(arrived) < samples:
        await asyncio.sleep(0.3)
        arrived = {s["key"]: s["at"] for s in fakes.cast_sent() if s["key"] in sent_at}
    added = [arrived[key] - sent_at[key] for key in arrived]
    return {
        "samples": samples,
        "arrived": len(arrived),
        "spacing_s": spacing,
        "added_p50_ms": percentile(added, 50) * 1000,
        "added_p95_ms": percentile(added, 95) * 1000,
        "added_p99_ms": percentile(added, 99) * 1000,
        "ack_p50_ms": percentile(acks, 50) * 1000,
    }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return int(lines[0].split()[1])


def baseline(
    bodies_file: Path,
    n: int,
    c: int,
    threads: int,
    workdir: Path,
    duration: int | None,
) -> dict[str, Any]:
    """The bare app's run."""
    port = free_port()
    log = workdir / "baseline.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_app", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return run_wrk(
            f"{url}/webhooks/ghl/outbound", bodies_file, n, c, threads, proc.pid, duration
        )
    finally:
        stop(proc)


def report(r: dict[str, Any]) -> str:
    ing, lat, drain, base = r["ingest"], r["latency"], r["drain"], r.get("baseline")
    n, rate = drain["queued"], r["rate"]
    ideal = n / rate
    cpu_us = ing["server_cpu_us_per_request"]
    ok = {
        "ingest_per_s": ing["per_s"] >= TARGETS["ingest_per_s"],
        "ack_p99_ms": ing["p99_us"] / 1000 < TARGETS["ack_p99_ms"],
        "cpu": cpu_us <= TARGETS["cpu_us_per_webhook"],
        "baseline": base is not None
        and ing["per_s"] / base["per_s"] >= TARGETS["baseline_fraction"],
        "cast_time": drain["cast_all_s"] is not None
        and drain["cast_all_s"] <= TARGETS["cast_time_factor"] * ideal
        and drain["rate_limited"] == 0,
        "added_latency": lat["added_p50_ms"] < TARGETS["added_latency_p50_ms"]
        and lat["added_p99_ms"] < TARGETS["added_latency_p99_ms"],
        "rss": r["peak_rss_mb"] < TARGETS["rss_mb"],
    }
    mark = {True: "ok  ", False: "MISS"}
    lines = [
        f"machine: {r['machine']['nproc']} cores, {r['machine']['cpu']}, "
        f"{r['machine']['ram_gib']} GiB RAM, Python {r['machine']['python']}; 1-min load "
        f"average {r['machine']['loadavg_at_start']:.2f} before the run (other work on the "
        f"machine), {r['machine']['loadavg_at_end']:.2f} after",
        f"store: {r['store']}   N={r['n']}  C={r['c']}  R={rate:g}/s  wrk threads={r['threads']}"
        f"  duration {r['duration'] or '-'} s  commit {r['machine']['commit']}",
        "",
        f"[{mark[ok['ingest_per_s']]}] ingest: {ing['per_s']:.0f} webhooks/s acknowledged "
        f"({ing['requests']} in {ing['elapsed_us'] / 1e6:.2f} s; answers {ing['codes']}, "
        f"socket errors {ing['connect_errors'] + ing['read_errors'] + ing['write_errors']}, "
        f"timeouts {ing['timeouts']})   target >= {TARGETS['ingest_per_s']}",
        f"[{mark[ok['ack_p99_ms']]}] ack latency: p50 {ing['p50_us'] / 1000:.1f} ms, "
        f"p95 {ing['p95_us'] / 1000:.1f} ms, p99 {ing['p99_us'] / 1000:.1f} ms, "
        f"max {ing['max_us'] / 1000:.1f} ms   target p99 < {TARGETS['ack_p99_ms']} ms",
        f"[{mark[ok['cpu']]}] bridge CPU during ingest: {cpu_us:.0f} us per webhook "
        f"(all its threads; {ing['server_cpu_s']:.1f} s CPU in {ing['elapsed_us'] / 1e6:.1f} s)"
        f"   target <= {TARGETS['cpu_us_per_webhook']} us",
        *(
            [
                f"       by stage (py-spy, {r['profile']}):",
                *stage_lines(r["profile_stages"], cpu_us),
            ]
            if r.get("profile_stages")
            else []
        ),
        f"[{mark[ok['baseline']]}] baseline (bare FastAPI: read the body, 202; same wrk): "
        f"{base['per_s']:.0f}/s, p99 {base['p99_us'] / 1000:.1f} ms, "
        f"{base['server_cpu_us_per_request']:.0f} us CPU per request  -> bridge "
        f"ingest = {ing['per_s'] / base['per_s']:.2f} x baseline   target >= "
        f"{TARGETS['baseline_fraction']}"
        if base
        else "       baseline: skipped",
        f"[{mark[ok['cast_time']]}] all {drain['cast_unique']}/{n} messages at fake Cast after "
        f"{_s(drain['cast_all_s'])} (N/R = {ideal:.1f} s, ratio "
        f"{_ratio(drain['cast_all_s'], ideal)}; target <= {TARGETS['cast_time_factor']}); "
        f"highest rate in any 1 s window: {drain['max_per_second']}/s; 429s: "
        f"{drain['rate_limited']}; duplicates: {drain['duplicates']}",
        f"       every status at fake GHL after {_s(drain['ghl_all_s'])} "
        f"({drain['ghl_unique']}/{n}, {drain['ghl_by_status']}); GHL 429s: "
        f"{drain['ghl_rate_limited']}; last status {_s(drain['last_status_after_last_send_s'])}"
        f" after the last send",
        f"       sending: {drain['achieved_of_r']:.1%} of R from the first send to the last",
        f"[{mark[ok['added_latency']]}] added latency webhook-in -> Cast-request-out "
        f"(not rate-limited, {lat['arrived']}/{lat['samples']} samples every "
        f"{lat['spacing_s'] * 1000:.0f} ms, before the ingest): p50 {lat['added_p50_ms']:.1f} "
        f"ms, p95 {lat['added_p95_ms']:.1f} ms, p99 {lat['added_p99_ms']:.1f} ms   target p50 "
        f"< {TARGETS['added_latency_p50_ms']} ms, p99 < {TARGETS['added_latency_p99_ms']} ms",
        f"[{mark[ok['rss']]}] peak RSS of the bridge (VmHWM): {r['peak_rss_mb']:.0f} MB   "
        f"target < {TARGETS['rss_mb']} MB",
    ]
    return "\n".join(lines)


def pacing_figures(sent: list[dict[str, Any]], rate: float, last_status: float | None) -> dict:
    """Achieved rate / R (first send to last) and the last status's delay after the last send."""
    times = sorted(sms["at"] for sms in sent)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "achieved_of_r": (len(times) - 1) / span / rate if span else 0.0,
        "last_status_after_last_send_s": last_status - times[-1]
        if last_status is not None and times
        else None,
    }


def pacing_runs(n: int, rate: float) -> list[dict[str, Any]]:
    cases = [
        {"replicas": 1, "real_rate": 0.0},
        {"replicas": 3, "real_rate": 0.0},
        {"replicas": 1, "real_rate": rate * 0.8},
    ]
    results = []
    for case in cases:
        load = os.getloadavg()[0]
        print(f"pacing: {n} messages, {case} (load {load:.2f}) ...", flush=True)
        args = argparse.Namespace(n=n, rate=rate, jitter=0.02, dump=None, replies=n // 20, **case)
        results.append({**asyncio.run(pacing_bench.run(args)), "load_at_start": load})
    return results


def pacing_report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run | load | achieved / R | most sends in any 1 s | 429 Cast / GHL "
        "| last status after last send |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        name = f"{r['replicas']} bridge(s), {r['messages']} messages"
        if r["real_rate"] != r["configured_rate"]:
            name += (
                f", configured {r['configured_rate']:g}/s, Cast allows {r['real_rate']:g}/s: "
                f"last 429 {r['last_429_after_first_send_s']} s in, then "
                f"{r['rate_after_last_429']}/s, at most "
                f"{r['max_sends_in_any_1s_after_last_429']} in any 1 s"
            )
        lines.append(
            f"| {name} | {r['load_at_start']:.1f} | {r['achieved_of_r']:.1%} "
            f"({r['achieved_per_s']}/s) | {r['max_sends_in_any_1s']} | {r['cast_429']} / "
            f"{r['ghl_429']} ({r['replies_in_ghl']} replies) | "
            f"{r['last_status_after_last_send_s']} s |"
        )
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "never (timed out)" if value is None else f"{value:.1f} s"


def _ratio(value: float | None, ideal: float) -> str:
    return "-" if value is None else f"{value / ideal:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="webhooks in the ingest phase")
    parser.add_argument("--c", type=int, default=64, help="concurrent connections (wrk -c)")
    parser.add_argument("--rate", type=float, default=10.0, help="Cast messages/s per key (R)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "mongo-wire"], default="sqlite")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--duration",
        type=int,
        default=None,
        help="stop ingest (and the baseline) after this many seconds, or after --n (first wins)",
    )
    parser.add_argument(
        "--ingest-only", action="store_true", help="skip the drain phase (iterating)"
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=None,
        help="run the bridge from this checkout (e.g. a worktree of an older commit)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the bridge with py-spy during ingest (collapsed stacks to this file)",
    )
    parser.add_argument(
        "--pacing",
        type=int,
        default=0,
        metavar="N",
        help="instead: issue 20's pacing runs, N messages each (1 and 3 bridges, adaptation)",
    )
    args = parser.parse_args()
    if args.pacing:
        results = pacing_runs(args.pacing, args.rate)
        print(json.dumps(results, indent=2))
        print(pacing_report(results))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cast-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    host = machine()  # before anything of ours runs: the load average says who else is busy
    # No modelled arrival jitter (the pacing bench's): it would add 0-20 ms to every latency.
    fakes = Fakes.start(args.rate, 30.0, 50.0, "--jitter", "0")
    store = StoreSetup.create(args.backend, workdir)
    bridge = make_bridge(
        store, fakes, workdir, args.rate, app_dir=args.app_dir, CAST_API_TIMEOUT_SECONDS="5"
    )
    try:
        asyncio.run(seed_installation(store.env, fakes.seed_pair(LOCATION)))
        bridge.start()
        bodies_file = workdir / "bodies.tsv"
        write_bodies(bodies_file, signed_webhooks(args.n, "bench"))
        print(f"work dir {workdir}; bridge pid {bridge.proc.pid if bridge.proc else '-'}")
        print(f"latency phase ({args.latency_samples} webhooks) ...", flush=True)
        latency = asyncio.run(
            latency_phase(bridge, fakes, args.latency_samples, spacing=2.0 / args.rate)
        )
        print(f"ingest: {args.n} webhooks at concurrency {args.c} ...", flush=True)
        profiler = start_profiler(bridge, args.profile) if args.profile else None
        t0 = time.monotonic()
        assert bridge.proc is not None
        ingest = run_wrk(
            f"{bridge.url}/webhooks/ghl/outbound",
            bodies_file,
            args.n,
            args.c,
            args.threads,
            bridge.proc.pid,
            args.duration,
        )
        stages = None
        if profiler is not None:
            stop_profiler(profiler, args.profile)
            stages = stage_shares(args.profile)
        bridge.sample_rss()
        queued = ingest["codes"].get("202", 0)
        print(
            f"  {ingest['per_s']:.0f}/s, p99 {ingest['p99_us'] / 1000:.1f} ms; draining "
            f"(about {queued / args.rate:.0f} s at R={args.rate:g}) ...",
            flush=True,
        )
        expected = queued + latency["arrived"]
        drain_timeout = 0 if args.ingest_only else queued / args.rate * 1.5 + 120
        cast, ghl = wait_drained(fakes, bridge, expected, timeout=drain_timeout)
        drain = {
            "queued": queued,
            "cast_unique": cast["unique"],
            "cast_all_s": cast["last_at"] - t0 if cast["unique"] >= expected else None,
            "first_send_s": cast["first_at"] - t0 if cast["first_at"] else None,
            "max_per_second": cast["max_per_second"],
            "rate_limited": cast["rate_limited"],
            "duplicates": cast["duplicates"],
            "replays": cast["replays"],
            "ghl_unique": ghl["unique"],
            "ghl_all_s": ghl["last_at"] - t0 if ghl["unique"] >= expected else None,
            "ghl_by_status": ghl["by_status"],
            "ghl_rate_limited": ghl["rate_limited"],
            **pacing_figures(fakes.cast_sent(), args.rate, ghl["last_at"]),
        }
        bridge.sample_rss()
        bridge.stop()
        base = None
        if not args.no_baseline:
            print("baseline ...", flush=True)
            base = baseline(bodies_file, args.n, args.c, args.threads, workdir, args.duration)
        results = {
            "machine": {**host, "loadavg_at_end": os.getloadavg()[0]},
            "store": store.label,
            "n": args.n,
            "c": args.c,
            "rate": args.rate,
            "threads": args.threads,
            "duration": args.duration,
            "profile": str(args.profile) if args.profile else None,
            "ingest": ingest,
            "drain": drain,
            "latency": latency,
            "baseline": base,
            "profile_stages": stages,
            "peak_rss_mb": bridge.peak_rss_kb / 1024,
            "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        (workdir / "results.json").write_text(json.dumps(results, indent=2))
        print()
        print(report(results))
        print(f"\nresults: {workdir / 'results.json'}; bridge log: {bridge.log_path}")
    finally:
        if bridge.proc is not None:
            bridge.stop()
        fakes.stop()
        store.close()
        if not args.keep and args.workdir is None:
            for name in ("bodies.tsv",):
                (workdir / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
