"""Start and stop the bridge as a process of its own (`python -m app`), on a free loopback port."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

import app

APP_SOURCE = Path(app.__file__).resolve().parents[1]  # where this process imported `app` from


# Ports handed out lately, by any process of this machine: the kernel may give a port just
# released to the next bind(0), so two test workers could each start a server on the same one
# (the second fails to bind while the first answers its health check).
_ISSUED = Path(tempfile.gettempdir()) / "cast-ghl-issued-ports"
_ISSUED_FOR_SECONDS = 600.0


def free_port() -> int:
    """A loopback port nothing listens on, not handed out by this function in any process of
    this machine in the last `_ISSUED_FOR_SECONDS`."""
    _ISSUED.mkdir(exist_ok=True)
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if _claim(_ISSUED / str(port)):
            return port


def _claim(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        try:
            if time.time() - marker.stat().st_mtime < _ISSUED_FOR_SECONDS:
                return False
            marker.touch()  # issued long ago: its server is gone
            return True
        except FileNotFoundError:
            return False


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
    source: Path = APP_SOURCE,
) -> subprocess.Popen[str]:
    """Run the bridge as its README says (`python -m app`) and wait until it is ready.

    `source` is the directory whose `app` runs: by default the one this process runs (the
    checkout under test, or the installed package); the benchmark compares two commits."""
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
