"""The message log on 100,000 messages: how long one filtered page takes on SQLite.

    .venv/bin/python -m bench.message_log_bench            # 100,000 messages, 20 runs a query
    .venv/bin/python -m bench.message_log_bench --n 20000 --runs 5

Fills a fresh SQLite file (WAL, as the bridge opens it) with `--n` finished messages, 80 %
outbound and 20 % inbound, over 200 locations, 5,000 customer numbers and 30 days, written as the
workers leave them (the full outbox/inbox documents), then times `MessageLog.page` (the store
query of both queues, the merge and the rows) for the filters the admin API offers. Each query
runs `--runs` times; the median and the slowest are printed. Target: every filtered page of 50
under 200 ms (issue 31).
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.inbound.repository import QUEUE as INBOUND
from app.inbound.schemas import InboundPayload, InboundSMS
from app.messages.repository import MessageLogRepository
from app.messages.schemas import MessageQuery
from app.messages.service import MessageLog
from app.outbound.repository import QUEUE as OUTBOUND
from app.outbound.service import new_message
from app.store import DONE
from app.store.sqlite import SQLiteStore
from bench.common import machine

TARGET_MS = 200.0
LOCATIONS = 200
NUMBERS = 5000
DAYS = 30
T0 = 1_800_000_000.0
WORDS = ["order", "promo", "reminder", "appointment", "thanks", "payment", "delivery", "hello"]


def number(i: int) -> str:
    return f"0917{i:07d}"


def outbound_row(i: int, rng: random.Random, at: float) -> tuple[Any, ...]:
    text = f"Your {rng.choice(WORDS)} #{i} for {rng.choice(WORDS)}"
    message = new_message(f"m{i:07d}", f"loc-{i % LOCATIONS}", number(i % NUMBERS), text, 160, at)
    message.finish(at + 5, "failed" if rng.random() < 0.05 else "delivered")
    return (OUTBOUND, message.message_id, message.model_dump(mode="json"), at)


def inbound_row(i: int, rng: random.Random, at: float) -> tuple[Any, ...]:
    payload = InboundPayload.model_validate(
        {"from": number(i % NUMBERS), "message": f"re {rng.choice(WORDS)} {i}", "id": f"r{i}"}
    )
    message = InboundSMS.from_payload(payload, at)
    message.assign(at, f"loc-{i % LOCATIONS}", "recent_outbound")
    message.finish(at, "delivered")
    return (INBOUND, message.id, message.model_dump(mode="json"), at)


async def fill(store: SQLiteStore, n: int) -> None:
    """`n` finished messages, inserted 5,000 at a time (group-committed as webhooks are)."""
    rng = random.Random(31)
    rows = []
    for i in range(n):
        at = T0 + (i / n) * DAYS * 86400
        rows.append(inbound_row(i, rng, at) if i % 5 == 4 else outbound_row(i, rng, at))
    for start in range(0, n, 5000):
        batch = rows[start : start + 5000]
        await asyncio.gather(
            *(store.enqueue(queue, item_id, data, at) for queue, item_id, data, at in batch)
        )
    # Finished, as the workers leave them (no lease, state done).
    await store._run(lambda c: c.execute("UPDATE items SET state = ?", (DONE,)))


QUERIES: dict[str, dict[str, Any]] = {
    "newest page, no filter": {},
    "one location": {"location_id": "loc-7"},
    "one location, failed": {"location_id": "loc-7", "status": "failed"},
    "one location, last 7 days": {"location_id": "loc-7", "since": "2027-02-07"},
    "one number (any spelling)": {"phone": "+63 917 000 1234"},
    "text in bodies": {"q": "appointment"},
    "one location + text": {"location_id": "loc-7", "q": "payment"},
    "rare text (scans all)": {"q": "#99999 "},
    "failed, all locations": {"status": "failed"},
}


async def measure(log: MessageLog, fields: dict[str, Any], runs: int) -> tuple[float, float, int]:
    query = MessageQuery.model_validate(fields)
    times, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        page = await log.page(query)
        times.append((time.perf_counter() - started) * 1000)
        found = len(page.messages)
    return statistics.median(times), max(times), found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        await store.start()
        started = time.perf_counter()
        await fill(store, args.n)
        print(f"filled {args.n:,} messages in {time.perf_counter() - started:.1f} s")
        log = MessageLog(MessageLogRepository(store))
        print(f"{'query':32} {'median ms':>10} {'max ms':>8} {'rows':>5}")
        for name, fields in QUERIES.items():
            median, slowest, found = await measure(log, fields, args.runs)
            flag = "" if slowest < TARGET_MS else "  over target"
            print(f"{name:32} {median:10.1f} {slowest:8.1f} {found:5}{flag}")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
