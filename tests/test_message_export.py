"""The message log's CSV export reads before it yields: the endpoint awaits the first chunk
before it answers, so a store that fails gives a JSON error, not a 200 and a cut file."""

import csv
import io

import pytest

from app.messages.repository import MessageLogRepository
from app.messages.schemas import CSV_COLUMNS, MessageQuery
from app.messages.service import MessageLog
from app.outbound.repository import QUEUE
from app.outbound.service import new_message
from app.store import Store, StoreUnavailable

T0 = 1_800_000_000.0


async def test_the_first_chunk_holds_the_header_and_the_first_rows(sqlite_store: Store):
    message = new_message("m-1", "loc-1", "+639171234567", "Hello", 160, T0)
    await sqlite_store.enqueue(QUEUE, "m-1", message.model_dump(mode="json"), due_at=T0)
    chunks = MessageLog(MessageLogRepository(sqlite_store)).export_csv(MessageQuery())

    rows = list(csv.reader(io.StringIO(await anext(chunks))))

    assert rows[0] == list(CSV_COLUMNS)
    assert [row[-1] for row in rows[1:]] == ["m-1"]


async def test_a_store_that_fails_fails_the_first_chunk(sqlite_store: Store):
    await sqlite_store.close()
    chunks = MessageLog(MessageLogRepository(sqlite_store)).export_csv(MessageQuery())

    with pytest.raises(StoreUnavailable):
        await anext(chunks)
