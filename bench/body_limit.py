"""Memory of a running bridge under oversized request bodies (docs/operations.md, body limit).

Starts the bridge (`python -m app`, embedded SQLite) from SOURCE (default: this checkout), then
sends 100 unsigned 10 MB webhooks (half with Content-Length, half chunked) one after another,
then 8 concurrent unsigned 50 MB chunked webhooks, and prints the process's resident memory
(VmRSS) before and after each phase and its peak (VmHWM).

    .venv/bin/python -m bench.body_limit [SOURCE]
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app.devkit.harness import bridge_env
from app.devkit.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
CHUNK = 64 * 1024


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


async def chunks(size: int) -> AsyncIterator[bytes]:
    block = b"x" * CHUNK
    for _ in range(size // CHUNK):
        yield block


async def attempt(client: httpx.AsyncClient, size: int, chunked: bool) -> str:
    content = chunks(size) if chunked else b"x" * size
    try:
        response = await client.post("/webhooks/ghl/outbound", content=content)
    except httpx.HTTPError as exc:  # the server hung up while the client was still sending
        return type(exc).__name__
    return str(response.status_code)


async def run(url: str, pid: int) -> None:
    print("idle:", memory_mb(pid))
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        outcomes = Counter([await attempt(client, 10 * MB, i % 2 == 1) for i in range(100)])
        took = time.perf_counter() - started
        print(f"after 100 x 10 MB ({took:.1f} s, {dict(outcomes)}):", memory_mb(pid))
        started = time.perf_counter()
        results = await asyncio.gather(*(attempt(client, 50 * MB, True) for _ in range(8)))
        took = time.perf_counter() - started
        print(f"after 8 x 50 MB at once ({took:.1f} s, {dict(Counter(results))}):", memory_mb(pid))


def main() -> None:
    source = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            **bridge_env(
                {"MONGO_URI": "", "DATA_DIR": data_dir}, "http://127.0.0.1:9", "http://127.0.0.1:9"
            ),
            "LOG_LEVEL": "ERROR",
            "PORT": str(port),
            "PYTHONPATH": str(source),
        }
        proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=source, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            asyncio.run(run(url, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
