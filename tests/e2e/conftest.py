from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import CAST_KEY, CLIENT_ID, CLIENT_SECRET, Harness, bridge_env
from app.devkit.server_thread import ServerThread


@pytest.fixture
def fake_cast() -> Iterator[tuple[FakeCast, ServerThread]]:
    cast = FakeCast({CAST_KEY}, per_key_rate=50)
    server = ServerThread(cast.app).start()
    yield cast, server
    server.stop(wait=False)  # its bridge has stopped: nothing waits for it


@pytest.fixture
def fake_ghl() -> Iterator[tuple[FakeGHL, ServerThread]]:
    ghl = FakeGHL(CLIENT_ID, CLIENT_SECRET)
    server = ServerThread(ghl.app).start()
    yield ghl, server
    server.stop(wait=False)


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """End-to-end flows run on SQLite: the store contract suite (tests/test_store_contract.py)
    holds both stores to the same behaviour. The MongoDB smoke tests are marked
    `tests.support.ON_BOTH_STORES`; `@pytest.mark.parametrize("backend", ["mongodb"],
    indirect=True)` runs a test on MongoDB only."""
    return request.param


@pytest.fixture
def harness(
    fake_cast: tuple[FakeCast, ServerThread],
    fake_ghl: tuple[FakeGHL, ServerThread],
    store_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Harness]:
    """A bridge not yet started: tests may change `env` or seed data first. It runs in the test
    process; a test marked `process` gets a real one (`python -m app`)."""
    cast, cast_server = fake_cast
    ghl, ghl_server = fake_ghl
    env = bridge_env(store_env, cast_server.url, ghl_server.url)
    as_process = request.node.get_closest_marker("process") is not None
    h = Harness(
        cast=cast, ghl=ghl, env=env, log_path=tmp_path / "bridge.log", as_process=as_process
    )
    yield h
    if h.running:
        h.stop()


@pytest.fixture
async def bridge(harness: Harness) -> AsyncIterator[Harness]:
    """An installed location and a running bridge."""
    await harness.seed_installation()
    harness.start()
    yield harness
