import contextlib
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.cast.keys import KEY_SECRET_PURPOSE, use_key_secret
from app.devkit.harness import CIPHER
from app.devkit.processes import stop
from app.store import Store
from app.store.mongo import MongoStore
from app.store.sqlite import SQLiteStore
from tests.support.mongo_wire_server import start_mongo_wire_server
from tests.support.units import FakeClock, FakeGHL

HARNESS_KEY_SECRET = CIPHER.derived_secret(KEY_SECRET_PURPOSE)


@pytest.fixture(autouse=True)
def harness_key_secret() -> None:
    """Key identities as a bridge started by the harness (the same TOKEN_ENCRYPTION_KEY)
    computes them, whatever secret a test that built services with another key left behind."""
    use_key_secret(HARNESS_KEY_SECRET)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Under pytest-xdist, a test marked `alone` runs while no other worker runs a test.

    Such a test needs the machine's cores to itself (the replicas keep to a sliding 1-s log
    against a fake Cast process): other workers' tests on the same two cores would delay it. A
    reader-writer lock on files that the workers of one run share (the parent of their base temp
    directories), held around each test's whole protocol, its fixtures of every scope included:
    shared by every test, exclusive by an `alone` one. A turnstile in front lets a waiting
    `alone` test in first (new tests wait behind it), so it waits only for the tests already
    running. In one process (no xdist) every test runs alone already."""
    if not hasattr(item.config, "workerinput"):
        return (yield)
    shared = Path(item.config.option.basetemp).parent  # xdist: <run's basetemp>/popen-gwN
    alone = item.get_closest_marker("alone") is not None
    with (
        (shared / "tests.turnstile").open("a") as turnstile,
        (shared / "tests.lock").open("a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        return (yield)  # closing the files releases their locks


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """A real MongoDB (TEST_MONGO_URI) or the mongoeco wire server on 127.0.0.1.

    Under pytest-xdist each worker is a session of its own, so each starts its own wire server
    (on a port the OS picks); every test works in a database of its own (`fresh_db_name`), so
    the workers can share a real server."""
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
