"""Pieces shared by the benchmark and the chaos run: processes, signed bodies, seeding, stats."""

import json
import os
import platform
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.devkit.harness import (
    ENCRYPTION_KEY,
    bridge_env,
    installation_from_pair,
    open_store,
    webhook,
)
from app.devkit.processes import free_port, start_bridge, stop
from app.devkit.signing import test_keys
from app.oauth.crypto import TokenCipher
from app.oauth.repository import InstallationRepository
from tests.support import ROOT
from tests.support.mongo_wire_server import start_mongo_wire_server

PHONES = ("+639171234567", "09181234567", "+63 917 555 0101", "639051234567", "9271234567")


# Processes ------------------------------------------------------------------------------
@dataclass
class Fakes:
    proc: subprocess.Popen[str]
    cast_url: str
    ghl_url: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @classmethod
    def start(
        cls,
        cast_rate: float,
        cast_ip_rate: float = 30.0,
        ip_burst: float = 50.0,
        *extra: str,
    ) -> "Fakes":
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fakes_server",
                "--cast-rate",
                str(cast_rate),
                "--cast-ip-rate",
                str(cast_ip_rate),
                "--ip-burst",
                str(ip_burst),
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            urls = json.loads(line)
        except ValueError:
            proc.kill()
            raise RuntimeError(f"fakes server did not start: {line!r}") from None
        return cls(proc, urls["cast_url"], urls["ghl_url"])

    def cast_stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.cast_url}/_stats").json()

    def cast_sent(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.cast_url}/_sent").json()

    def ghl_stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.ghl_url}/_stats").json()

    def ghl_statuses(self) -> dict[str, str]:
        return self.http.get(f"{self.ghl_url}/_statuses").json()

    def seed_pair(self, location_id: str) -> dict[str, Any]:
        return self.http.post(f"{self.ghl_url}/_seed", json={"location_id": location_id}).json()

    def fault(self, target: str, **spec: Any) -> None:
        url = self.cast_url if target == "cast" else self.ghl_url
        self.http.post(f"{url}/_fault", json=spec).raise_for_status()

    def stop(self) -> None:
        self.http.close()
        stop(self.proc)


@dataclass
class StoreSetup:
    """Where the bridge keeps its data for one run, and how to stop the database if we own it."""

    env: dict[str, str]
    label: str
    mongo_proc: subprocess.Popen[str] | None = None

    @classmethod
    def create(cls, backend: str, workdir: Path) -> "StoreSetup":
        data_dir = str(workdir / "data")
        if uri := os.environ.get("MONGO_URI"):
            db = f"bench_{uuid.uuid4().hex[:10]}"
            return cls({"MONGO_URI": uri, "MONGO_DB": db, "DATA_DIR": data_dir}, "mongodb")
        if backend == "mongo-wire":
            proc, uri = start_mongo_wire_server()
            env = {"MONGO_URI": uri, "MONGO_DB": "bench", "DATA_DIR": data_dir}
            return cls(env, "mongodb (mongoeco wire server)", proc)
        return cls({"MONGO_URI": "", "DATA_DIR": data_dir}, "sqlite (embedded)")

    def close(self) -> None:
        if self.mongo_proc is not None:
            stop(self.mongo_proc)


async def seed_installation(store_env: dict[str, str], pair: dict[str, Any]) -> None:
    """Store the location's tokens as the OAuth callback would."""
    installation = installation_from_pair(pair)
    store = open_store(store_env)
    await store.start()
    try:
        await InstallationRepository(store, TokenCipher(ENCRYPTION_KEY.encode())).put(installation)
    finally:
        await store.close()


@dataclass
class Bridge:
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    app_dir: Path | None = None  # another checkout to run the bridge from (default: this one)
    proc: subprocess.Popen[str] | None = None
    peak_rss_kb: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_bridge(self.env, self.port, self.log_path, source=self.app_dir or ROOT)

    def sample_rss(self) -> int:
        """VmHWM (peak resident set) of the running bridge, in kB; remembered across restarts."""
        if self.proc is not None and self.proc.poll() is None:
            self.peak_rss_kb = max(self.peak_rss_kb, proc_status_kb(self.proc.pid, "VmHWM"))
        return self.peak_rss_kb

    def kill(self) -> None:
        assert self.proc is not None
        self.sample_rss()
        stop(self.proc, signal.SIGKILL)
        self.proc = None

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.sample_rss()
        code = stop(self.proc)
        self.proc = None
        return code


def make_bridge(
    store: StoreSetup,
    fakes: Fakes,
    workdir: Path,
    rate: float,
    app_dir: Path | None = None,
    **extra: str,
) -> Bridge:
    env = bridge_env(
        store.env,
        fakes.cast_url,
        fakes.ghl_url,
        CAST_RATE_PER_KEY=f"{rate:g}",
        LOG_LEVEL="INFO",
        **extra,
    )
    return Bridge(env, workdir / "bridge.log", app_dir=app_dir)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# Signed webhooks ------------------------------------------------------------------------
def signed_webhooks(n: int, prefix: str) -> list[tuple[str, bytes, str]]:
    """(messageId, body, X-GHL-Signature) for `n` distinct SMS messages."""
    keys = test_keys()
    out = []
    for i in range(n):
        message_id = f"{prefix}-{i:06d}"
        payload = webhook(
            message_id, phone=PHONES[i % len(PHONES)], message=f"Benchmark message {i}"
        )
        body = json.dumps(payload, separators=(",", ":")).encode()
        out.append((message_id, body, keys.ed25519_headers(body)["X-GHL-Signature"]))
    return out


def write_bodies(path: Path, bodies: list[tuple[str, bytes, str]]) -> None:
    """One `signature<TAB>body` line per webhook, for the wrk Lua script."""
    with path.open("w") as out:
        for _, body, signature in bodies:
            out.write(f"{signature}\t{body.decode()}\n")


# Reporting ------------------------------------------------------------------------------
def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = proc_meminfo_kb("MemTotal")
    commit = os.environ.get("BENCH_COMMIT")
    if commit is None:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        commit = done.stdout.strip() or "unknown"
    return {
        "commit": commit,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
    }


def proc_meminfo_kb(name: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
