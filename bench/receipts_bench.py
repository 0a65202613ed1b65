"""Many tenants behind one egress IP (issue 30): K sub-accounts with their own Cast keys, M
messages each posted at once, carrier mode, receipts reconciled from the keys' message logs.

    .venv/bin/python -m bench.receipts_bench --keys 20 --per-key 100 --replicas 1 3   # ~3 min

One fake Cast + fake GHL process (`bench.fakes_server --keys K --key-limiter sliding
--ip-limiter sliding --settle-after 3 20`: Cast's 10 msg/s per key and 30 requests/s per IP
over ALL endpoints, both as sliding 1-s logs with 20 ms of arrival jitter; each receipt known
3-20 s after its send), then, for each `--replicas` count, that many bridges on one SQLite
store with the defaults (CAST_RATE_PER_KEY=10, CAST_IP_RATE=30, DLR_FIRST_POLL_SECONDS=15,
DLR_LOGS_INTERVAL_SECONDS=10; several replicas: one CAST_EGRESS_GROUP, as behind one NAT
address, which is what the fake sees: they all come from 127.0.0.1), K locations each sending
with its own key, every message posted to the first bridge. Reports the send rate (messages - 1
over first-to-last send), Cast requests per message (sends, logs and status reads, account
reads: everything), 429s, and the median and last time from Cast's acceptance to the status at
GHL, with the load average.
"""

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.devkit.harness import CIPHER, installation_from_pair, open_store, webhook
from app.devkit.signing import test_keys
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.repository import InstallationRepository
from bench.common import Fakes, StoreSetup, make_bridge, percentile
from bench.fakes_server import bench_keys

POST_CONCURRENCY = 32


def location_of(index: int) -> str:
    return f"loc-bench-{index:03d}"


async def seed_locations(fakes: Fakes, store_env: dict[str, str], keys: list[str]) -> None:
    """One installed location per key, sending with that key."""
    store = open_store(store_env)
    await store.start()
    try:
        for index, key in enumerate(keys):
            location_id = location_of(index)
            pair = fakes.seed_pair(location_id)
            await InstallationRepository(store, CIPHER).put(
                installation_from_pair(pair, location_id)
            )
            settings = LocationSettings(location_id=location_id, cast_api_key=key, updated_at=0)
            await LocationSettingsRepository(store, CIPHER).put(settings)
    finally:
        await store.close()


def bodies(keys: int, per_key: int) -> list[tuple[bytes, str]]:
    """Signed webhooks, round-robin over the locations: (body, X-GHL-Signature)."""
    signing = test_keys()
    out = []
    for n in range(keys * per_key):
        payload = webhook(f"bulk-{n:06d}", locationId=location_of(n % keys))
        body = json.dumps(payload, separators=(",", ":")).encode()
        out.append((body, signing.ed25519_headers(body)["X-GHL-Signature"]))
    return out


async def post_all(url: str, signed: list[tuple[bytes, str]]) -> None:
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in signed:
        queue.put_nowait(item)

    async def poster(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body, signature = queue.get_nowait()
            headers = {"Content-Type": "application/json", "X-GHL-Signature": signature}
            response = await client.post("/webhooks/ghl/outbound", content=body, headers=headers)
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(poster(client) for _ in range(POST_CONCURRENCY)))


def figures(fakes: Fakes, n: int) -> dict[str, Any]:
    stats, ghl = fakes.cast_stats(), fakes.ghl_stats()
    times = fakes.http.get(f"{fakes.cast_url}/_receipts").json()
    waits = [status - accepted for accepted, status in times.values() if status is not None]
    first, last = stats["first_at"], stats["last_at"]
    last_status = max((s for _, s in times.values() if s is not None), default=None)
    requests = sum(stats["api_calls"].values())
    return {
        "messages": n,
        "sent": stats["sent"],
        "duplicates": stats["duplicates"],
        "send_rate": (stats["sent"] - 1) / (last - first) if last and first and last > first else 0,
        "requests": stats["api_calls"],
        "requests_per_message": requests / n,
        "cast_429": stats["rate_limited"],
        "cast_429_per_ip": stats["ip_limited"],
        "ghl_429": ghl["rate_limited"],
        "statuses": ghl["unique"],
        "repeated_statuses": ghl["repeated"],
        "by_status": ghl["by_status"],
        "accept_to_status_p50": percentile(waits, 50),
        "accept_to_status_max": max(waits, default=float("nan")),
        "last_status_after_last_send": (last_status - last) if last_status and last else None,
        "loadavg": os.getloadavg(),
    }


async def run(keys: int, per_key: int, replicas: int, timeout: float) -> dict[str, Any]:
    n = keys * per_key
    fakes = Fakes.start(
        10.0,
        30.0,
        50.0,
        "--keys",
        str(keys),
        "--key-limiter",
        "sliding",
        "--ip-limiter",
        "sliding",
        "--settle-after",
        "3",
        "20",
    )
    workdir = Path(tempfile.mkdtemp(prefix="receipts-bench-"))
    store = StoreSetup.create("sqlite", workdir)
    bridges = [
        make_bridge(
            store,
            fakes,
            workdir,
            10.0,
            DLR_FIRST_POLL_SECONDS="15",
            DLR_MAX_POLL_INTERVAL_SECONDS="120",
            DLR_LOGS_INTERVAL_SECONDS="10",
            CAST_API_TIMEOUT_SECONDS="15",
            CAST_EGRESS_GROUP="bench-nat" if replicas > 1 else "",
        )
        for _ in range(replicas)
    ]
    try:
        await seed_locations(fakes, store.env, bench_keys(keys))
        signed = bodies(keys, per_key)
        for index, bridge in enumerate(bridges):
            bridge.log_path = workdir / f"bridge-{index}.log"
            bridge.start()
        await post_all(bridges[0].url, signed)
        deadline = time.monotonic() + timeout
        while fakes.ghl_stats()["unique"] < n and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
        return {"replicas": replicas, **figures(fakes, n)}
    finally:
        for bridge in bridges:
            bridge.stop()
        fakes.stop()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--per-key", type=int, default=100)
    parser.add_argument(
        "--replicas", type=int, nargs="+", default=[1, 3], help="one run per count, in turn"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait, at most")
    args = parser.parse_args()
    for replicas in args.replicas:
        result = asyncio.run(run(args.keys, args.per_key, replicas, args.timeout))
        print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    main()
