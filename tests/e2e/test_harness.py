"""The in-process bridge of the harness behaves as a process of its own would, where tests look:
its own settings, its own log, only a graceful stop."""

import signal
from pathlib import Path

import pytest

from app.config import SettingsError
from app.devkit.harness import Harness, webhook


async def test_two_bridges_in_one_process_each_log_only_their_own_lines(
    bridge: Harness, tmp_path: Path
):
    other = Harness(bridge.cast, bridge.ghl, dict(bridge.env), tmp_path / "other.log")
    other.start()
    try:
        await bridge.post(webhook("m-first"))
        await other.post(webhook("m-second"))
        await bridge.wait_for(lambda: len(bridge.ghl.statuses) == 2, what="both statuses")
    finally:
        assert other.stop() == 0

    assert "m-first" in bridge.logs() and "m-second" not in bridge.logs()
    assert "m-second" in other.logs() and "m-first" not in other.logs()
    assert "shutdown complete" in other.logs() and "shutdown complete" not in bridge.logs()


async def test_a_bridge_with_a_bad_setting_does_not_start_and_names_it(harness: Harness):
    harness.env["CAST_API_KEY"] = "not-a-cast-key"

    with pytest.raises(SettingsError, match="CAST_API_KEY"):
        harness.start()
    assert not harness.running


async def test_an_in_process_bridge_cannot_be_killed_and_keeps_running(bridge: Harness):
    with pytest.raises(ValueError, match="process"):
        bridge.stop(signal.SIGKILL)

    assert bridge.alive and (await bridge.post(webhook("m-after"))).status_code == 202
