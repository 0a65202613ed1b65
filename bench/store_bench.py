"""The store on its own: inserts/s and claims/s per backend at 1k and 100k rows.

    .venv/bin/python -m bench.store_bench                      # SQLite + mongoeco wire server
    MONGO_URI=mongodb://localhost:27017 .venv/bin/python -m bench.store_bench --backends mongodb

- inserts: `enqueue` of N outbox items (the document the webhook path stores), `--concurrency`
  at a time as concurrent webhooks would;
- claims: `claim` in batches of 100 (the worker's batch) until the N items are all leased;
- saves: `save` (finish) of every claimed item with its lease, `--concurrency` at a time.

SQLite runs on a fresh file under a temporary directory (WAL, as the bridge opens it). The
mongoeco wire server is a pure-Python MongoDB stand-in for the tests, far slower than mongod (a
claim scans the collection: about 100 claims/s at 1k rows), so it runs at 1k rows unless
`--mongo-sizes` says otherwise. MONGO_URI (a real server) runs at the full sizes on a fresh
database that is dropped afterwards.
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from app.devkit.harness import webhook
from app.devkit.processes import stop
from app.ghl.schemas import ProviderOutboundMessage
from app.outbound.service import build_message
from app.store import Store
from app.store.mongo import MongoStore
from app.store.sqlite import SQLiteStore
from bench.common import machine
from tests.support.mongo_wire_server import start_mongo_wire_server

QUEUE = "outbound"
CLAIM_BATCH = 100
TARGETS = {"sqlite_inserts": 2000, "sqlite_claims": 1000}


def item_data(i: int) -> dict[str, Any]:
    payload = ProviderOutboundMessage.model_validate(
        webhook(f"store-{i}", message=f"Store benchmark message {i}")
    )
    return build_message(payload, 450, time.time()).model_dump(mode="json")


async def measure(store: Store, n: int, concurrency: int) -> dict[str, float]:
    data = item_data(0)
    now = time.time()
    started = time.perf_counter()
    for start in range(0, n, concurrency):
        ids = range(start, min(n, start + concurrency))
        results = await asyncio.gather(*(store.enqueue(QUEUE, f"m{i:07d}", data, now) for i in ids))
        assert all(results)
    insert_s = time.perf_counter() - started

    claimed = []
    started = time.perf_counter()
    while True:
        batch = await store.claim(QUEUE, now=now + 1, lease_seconds=300, limit=CLAIM_BATCH)
        if not batch:
            break
        claimed.extend(batch)
    claim_s = time.perf_counter() - started
    assert len(claimed) == n, (len(claimed), n)

    started = time.perf_counter()
    for start in range(0, n, concurrency):
        chunk = claimed[start : start + concurrency]
        results = await asyncio.gather(
            *(
                store.save(QUEUE, it.id, it.lease or "", data=data, state="done", due_at=now)
                for it in chunk
            )
        )
        assert all(results)
    save_s = time.perf_counter() - started
    return {
        "rows": n,
        "inserts_per_s": n / insert_s,
        "claims_per_s": n / claim_s,
        "saves_per_s": n / save_s,
    }


async def run_sqlite(n: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.start()
        try:
            return await measure(store, n, concurrency)
        finally:
            await store.close()


async def run_mongo(uri: str, n: int, concurrency: int) -> dict[str, float]:
    db = f"store_bench_{uuid.uuid4().hex[:8]}"
    store = MongoStore(uri, db)
    await store.start()
    try:
        return await measure(store, n, concurrency)
    finally:
        await store._client.drop_database(db)  # benchmark clean-up only
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="rows, comma-separated")
    parser.add_argument("--mongo-sizes", default="1000", help="rows for the wire server")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--backends", default="sqlite,mongodb", help="comma-separated: sqlite, mongodb"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    host = machine()
    print(
        f"machine: {host['nproc']} cores, {host['cpu']}, {host['ram_gib']} GiB RAM, "
        f"Python {host['python']}; load average {host['loadavg_at_start']:.2f}; "
        f"concurrency {args.concurrency}, claim batch {CLAIM_BATCH}"
    )
    rows: list[tuple[str, dict[str, float]]] = []
    if "sqlite" in backends:
        for n in sizes:
            rows.append(("sqlite", asyncio.run(run_sqlite(n, args.concurrency))))
            print(_line(*rows[-1]), flush=True)
    if "mongodb" in backends:
        uri = os.environ.get("MONGO_URI")
        proc = None
        label = "mongodb"
        mongo_sizes = sizes
        if not uri:
            proc, uri = start_mongo_wire_server()
            label = "mongoeco wire server"
            mongo_sizes = [int(s) for s in args.mongo_sizes.split(",")]
        try:
            for n in mongo_sizes:
                rows.append((label, asyncio.run(run_mongo(uri, n, args.concurrency))))
                print(_line(*rows[-1]), flush=True)
        finally:
            if proc is not None:
                stop(proc)
    for label, row in rows:
        if label == "sqlite" and row["rows"] >= 100_000:
            ok = (
                row["inserts_per_s"] >= TARGETS["sqlite_inserts"]
                and row["claims_per_s"] >= TARGETS["sqlite_claims"]
            )
            print(
                f"[{'ok  ' if ok else 'MISS'}] SQLite at {row['rows']:,} rows: target >= "
                f"{TARGETS['sqlite_inserts']:,} inserts/s and >= {TARGETS['sqlite_claims']:,} "
                "claims/s"
            )


def _line(label: str, row: dict[str, float]) -> str:
    return (
        f"{label:>22} {row['rows']:>8,} rows: {row['inserts_per_s']:>8,.0f} inserts/s "
        f"{row['claims_per_s']:>8,.0f} claims/s {row['saves_per_s']:>8,.0f} saves/s"
    )


if __name__ == "__main__":
    main()
