import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.devkit.processes import stop
from app.store import Store
from app.store.mongo import MongoStore
from app.store.sqlite import SQLiteStore
from tests.support.mongo_wire_server import start_mongo_wire_server
from tests.support.units import FakeClock, FakeGHL


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A real MongoDB (TEST_MONGO_URI) or the mongoeco wire server on 127.0.0.1."""
    if uri := os.environ.get("TEST_MONGO_URI"):
        yield uri
        return
    proc, uri = start_mongo_wire_server()
    try:
        yield uri
    finally:
        stop(proc)


def fresh_db_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "mongodb"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_env(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment variables that point a bridge at a fresh database of `backend`."""
    if backend == "mongodb":
        uri = request.getfixturevalue("mongo_uri")
        return {"MONGO_URI": uri, "MONGO_DB": fresh_db_name(), "DATA_DIR": str(tmp_path)}
    return {"MONGO_URI": "", "DATA_DIR": str(tmp_path)}


@contextlib.asynccontextmanager
async def started(opened: Store) -> AsyncIterator[Store]:
    """`opened`, started for the block and closed after it."""
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    if backend == "mongodb":
        opened: Store = MongoStore(request.getfixturevalue("mongo_uri"), fresh_db_name())
    else:
        opened = SQLiteStore(tmp_path / "store.sqlite3")
    async with started(opened):
        yield opened


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """An embedded SQLite store in tmp_path (the unit tests of the state machines)."""
    async with started(SQLiteStore(tmp_path / "unit.sqlite3")) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when a test advances it (the state-machine unit tests)."""
    return FakeClock()


@pytest.fixture
def ghl() -> FakeGHL:
    """An in-process GHL client whose answers a test scripts (the state-machine unit tests)."""
    return FakeGHL()
