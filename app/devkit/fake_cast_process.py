"""The fake Cast in a process of its own, for tests whose timing it must not share a GIL with.

`python -m app.devkit.fake_cast_process --rate 50 --ip-rate 300 --ip-burst 300 --key-limiter sliding
--jitter 0.02 --key cast_…` prints
its URL once listening. Extra routes: `GET /_sent` (every real send, arrival time on this
machine's monotonic clock) and `GET /_stats`. `RemoteCast` reads them from the test process.
"""

import argparse
import subprocess
import sys
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app.devkit.fake_cast import FakeCast, StallWatch
from app.devkit.processes import free_port


def build_app(cast: FakeCast) -> FastAPI:
    @cast.app.get("/_sent")
    async def sent() -> list[dict[str, Any]]:
        return cast.sent

    @cast.app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return {"rate_limited": cast.rate_limited, "requests": len(cast.requests)}

    @cast.app.get("/_limited")
    async def limited() -> list[dict[str, Any]]:
        return [r for r in cast.requests if r.get("status") == 429]

    return cast.app


class RemoteCast:
    """What the tests read of a fake Cast running in another process."""

    def __init__(
        self,
        keys: list[str],
        *,
        rate: float,
        ip_rate: float,
        ip_burst: float,
        key_limiter: str = "sliding",
        jitter: float = 0.02,
    ) -> None:
        self.port = free_port()
        args = [
            sys.executable,
            "-m",
            "app.devkit.fake_cast_process",
            "--port",
            str(self.port),
            "--rate",
            str(rate),
            "--ip-rate",
            str(ip_rate),
            "--ip-burst",
            str(ip_burst),
            "--key-limiter",
            key_limiter,
            "--jitter",
            str(jitter),
        ]
        for key in keys:
            args += ["--key", key]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.proc.kill()
            raise RuntimeError("fake Cast process did not start")

    @property
    def sent(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_sent", timeout=10).json()

    @property
    def rate_limited(self) -> int:
        return httpx.get(f"{self.url}/_stats", timeout=10).json()["rate_limited"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--ip-rate", type=float, default=30.0)
    parser.add_argument("--ip-burst", type=float, default=50.0)
    parser.add_argument("--key-limiter", choices=["bucket", "sliding"], default="sliding")
    parser.add_argument("--jitter", type=float, default=0.0, help="max random network delay, s")
    parser.add_argument("--key", action="append", default=[])
    args = parser.parse_args()
    cast = FakeCast(
        set(args.key),
        per_key_rate=args.rate,
        ip_rate=args.ip_rate,
        ip_burst=args.ip_burst,
        key_limiter=args.key_limiter,
        jitter=args.jitter,
    )
    config = uvicorn.Config(build_app(cast), host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        cast.stall_watch = StallWatch()
        cast.stall_watch.start()
        await original_startup(sockets)
        print(f"http://127.0.0.1:{args.port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":
    main()
