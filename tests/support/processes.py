"""Start and stop helper processes (the mongo wire server, the bridge under uvicorn)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mongo_wire_server(port: int = 0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mongo_wire_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    uri = proc.stdout.readline().strip()
    if not uri.startswith("mongodb://"):
        proc.kill()
        raise RuntimeError(f"mongo wire server did not start: {uri!r}")
    return proc, uri


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def start_bridge(
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    cwd: Path | None = None,
    source: Path = ROOT,
) -> subprocess.Popen[str]:
    """Run the bridge as its README says (`python -m app`) and wait until it is ready.

    `source` is the checkout whose `app` runs (the benchmark compares two commits)."""
    full_env = {**os.environ, **env, "PORT": str(port), "PYTHONPATH": str(source)}
    log = log_path.open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=cwd or source,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_ready(f"http://127.0.0.1:{port}", proc, log_path)
    return proc


def wait_ready(base_url: str, proc: subprocess.Popen[str], log_path: Path, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited {proc.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"bridge not ready: {log_path.read_text()[-3000:]}")
