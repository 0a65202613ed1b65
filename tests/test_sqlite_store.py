"""What only the SQLite backend does: group-committed inserts (one transaction per batch)."""

import asyncio
import sqlite3

from app.store import PENDING, StoreUnavailable
from app.store.sqlite import SQLiteStore

NOW = 1_000_000.0


async def test_a_batch_that_cannot_be_committed_fails_every_insert_and_stores_none(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SQLiteStore(path)
    await store.start()
    try:
        await store._run(lambda c: c.execute("PRAGMA busy_timeout=50"))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        inserts = (store.enqueue("outbound", f"m{i}", {}, NOW) for i in range(6))
        results = await asyncio.gather(*inserts, return_exceptions=True)
        blocker.execute("ROLLBACK")
        blocker.close()

        assert all(isinstance(result, StoreUnavailable) for result in results), results
        assert (await store.count_items("outbound"))[PENDING] == 0
        assert await store.enqueue("outbound", "m0", {}, NOW)  # the next batch goes through
    finally:
        await store.close()
