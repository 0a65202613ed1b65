"""Process lifecycle: graceful SIGTERM, and start-up from any working directory."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from app.devkit.harness import Harness, webhook
from app.devkit.processes import free_port, stop, wait_ready
from app.outbound.repository import QUEUE
from tests.support import ROOT
from tests.support.mongo_wire_server import start_mongo_wire_server


@pytest.mark.process  # SIGTERM and the exit code
async def test_sigterm_exits_0_quickly_and_hands_in_flight_work_back(harness: Harness):
    harness.env.update({"SHUTDOWN_TIMEOUT_SECONDS": "2", "CAST_API_TIMEOUT_SECONDS": "8"})
    harness.cast.fail_next(1, 503, stall_seconds=10)
    await harness.seed_installation()
    harness.start()
    await harness.post(webhook("m-term"))
    await harness.wait_for(lambda: harness.cast.requests, what="a send in flight")

    started = time.monotonic()
    assert harness.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 8
    item = await harness.with_store(lambda store: store.get_item(QUEUE, "m-term"))
    assert item.state == "pending" and item.lease is None and item.due_at <= time.time()
    assert "shutdown complete" in harness.logs()

    harness.start()
    await harness.wait_for(lambda: harness.statuses_for("m-term"), what="status after restart")
    await asyncio.sleep(0.3)
    assert len(harness.cast.sent) == 1


@pytest.mark.process  # a process's working directory
async def test_the_bridge_starts_from_another_working_directory(harness: Harness, tmp_path):
    await harness.seed_installation()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    from app.devkit.processes import start_bridge

    harness.proc = start_bridge(harness.env, harness.port, harness.log_path, cwd=elsewhere)
    response = await harness.post(webhook("m-cwd"))
    assert response.status_code == 202


@pytest.mark.process  # a database starting
@pytest.mark.parametrize("backend", ["mongodb"], indirect=True)  # only a server can be late
async def test_the_bridge_waits_for_a_mongodb_that_is_still_starting(harness: Harness):
    port = free_port()
    harness.env.update({"MONGO_URI": f"mongodb://127.0.0.1:{port}/?directConnection=true"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        stdout=harness.log_path.open("a"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **harness.env, "PORT": str(harness.port)},
    )
    harness.proc = proc
    # One server-selection timeout (5 s) after its start, the bridge says it waits, and lives on.
    await harness.wait_for(lambda: "store not reachable yet" in harness.logs(), timeout=30)
    assert proc.poll() is None, harness.logs()
    mongo, _ = start_mongo_wire_server(port)
    try:
        wait_ready(harness.url, proc, harness.log_path)
    finally:
        harness.stop()
        stop(mongo)
