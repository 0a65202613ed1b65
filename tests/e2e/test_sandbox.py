"""`cast-ghl sandbox`, as the README tells an evaluator to run it: no credentials, to the end."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def test_the_sandbox_walks_a_message_and_a_reply_through_and_shows_them_delivered(
    tmp_path: Path,
):
    script = Path(sys.executable).parent / "cast-ghl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GHL_", "CAST_", "MONGO_", "INBOUND_", "ADMIN_"))
    }
    result = subprocess.run(
        [*command, "sandbox"],
        cwd=tmp_path,  # no .env, no credentials
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # what Cast saw: the SIM gateway, from the SIM number the reply then goes to
    assert "POST /api/v1/sim/send: SMS to 09171234567 from sender ID +639170000001" in out
    assert "GET /api/v1/sim/status/" in out
    assert "inbound SMS from 09171234567 to +639170000001" in out
    assert '{"status": "delivered"}' in out  # what GHL saw for the message
    assert "POST /conversations/messages/inbound" in out and "YES, see you at 3" in out
    assert 'bridge_messages_total{reason="confirmed",status="delivered"} 1.0' in out
    assert out.rstrip().endswith(
        "OK: outbound message delivered; the reply was added to the GHL conversation."
    )
