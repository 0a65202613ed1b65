"""The `cast-ghl` operator CLI against a real database (SQLite, and MongoDB through the wire
server), seeded through the same repositories the bridge uses."""

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import cli
from app.cast.pacing import CastPacer, key_fingerprint
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import (
    CAST_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    ENCRYPTION_KEY,
    LOCATION,
    Harness,
    bridge_env,
)
from app.devkit.server_thread import ServerThread
from app.ghl.schemas import ProviderOutboundMessage
from app.inbound.repository import InboxRepository
from app.inbound.schemas import InboundPayload, InboundSMS
from app.locations.repository import LocationSettingsRepository
from app.oauth.crypto import TokenCipher
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from app.outbound.repository import OutboxRepository
from app.outbound.service import build_message
from app.store import DONE, PENDING, Store
from tests.support import ROOT

ADMIN_KEY = "admin-cli-key-3a8f0e2d77"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeCast, FakeGHL, str, str]]:
    cast, ghl = FakeCast({CAST_KEY}), FakeGHL(CLIENT_ID, CLIENT_SECRET)
    cast_server, ghl_server = ServerThread(cast.app).start(), ServerThread(ghl.app).start()
    yield cast, ghl, cast_server.url, ghl_server.url
    cast_server.stop()
    ghl_server.stop()


@pytest.fixture
def env(
    store_env: dict[str, str],
    fakes: tuple[FakeCast, FakeGHL, str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> dict[str, str]:
    """The bridge's settings in the environment, run from a directory without a `.env`."""
    values = bridge_env(store_env, fakes[2], fakes[3], ADMIN_API_KEY=ADMIN_KEY)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def harness(env: dict[str, str], fakes: tuple[FakeCast, FakeGHL, str, str], tmp_path: Path):
    return Harness(cast=fakes[0], ghl=fakes[1], env=env, log_path=tmp_path / "unused.log")


async def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await cli.run(list(argv), out=out)
    return code, out.getvalue()


def outbound(message_id: str, phone: str = "+639171234567") -> ProviderOutboundMessage:
    return ProviderOutboundMessage.model_validate(
        {
            "messageId": message_id,
            "locationId": LOCATION,
            "contactId": "contact-1",
            "phone": phone,
            "message": "Hello",
            "type": "SMS",
        }
    )


async def seed_outbound(store: Store, message_id: str, status: str, code: str | None = None):
    outbox = OutboxRepository(store)
    now = time.time()
    message = build_message(outbound(message_id), 450, now)
    assert await outbox.add(message)
    (item,) = await outbox.claim(now=now + 1, lease_seconds=30, limit=1)
    message.record(now, "cast_retry", "Cast did not answer in time; retrying in 1.0s")
    message.finish(now, status, code, f"Cast refused the SMS (402 {code})" if code else None)  # type: ignore[arg-type]
    assert await outbox.finish(item, message, now)


async def seed_unroutable(store: Store, gateway_id: str, sender: str) -> None:
    inbox = InboxRepository(store)
    now = time.time()
    payload = InboundPayload.model_validate(
        {"from": sender, "message": f"text {gateway_id}", "to": "CASTTEST", "id": gateway_id}
    )
    message = InboundSMS.from_payload(payload, now)
    assert await inbox.add(message)
    (item,) = await inbox.claim(now=now + 1, lease_seconds=30, limit=1)
    message.finish(now, "unroutable", "UNROUTABLE", "no location")
    assert await inbox.finish(item, message, now)


async def test_installations_lists_the_location_without_tokens(harness: Harness):
    token = await harness.seed_installation()

    code, text = await run("installations")
    json_code, as_json = await run("installations", "--json")

    assert code == 0 and f"location:{LOCATION}" in text and "needs re-install" in text
    assert json_code == 0
    (row,) = json.loads(as_json)
    assert (row["location_id"], row["needs_reauth"]) == (LOCATION, False)
    assert token not in text + as_json and "refresh-" not in text + as_json


async def test_message_shows_where_a_message_is_and_its_history(harness: Harness):
    await harness.with_store(lambda s: seed_outbound(s, "m-cli", "failed", "INSUFFICIENT_CREDITS"))

    code, text = await run("message", "m-cli")
    json_code, as_json = await run("message", "m-cli", "--json")
    missing, error = await run("message", "m-none", "--json")

    assert code == 0
    assert "failed  INSUFFICIENT_CREDITS" in text and "cast_retry" in text and "4567" in text
    assert "9171234567" not in text
    shown = json.loads(as_json)
    assert json_code == 0 and shown["status"] == "failed" and shown["state"] == "done"
    assert [e["event"] for e in shown["history"]] == ["received", "cast_retry", "failed"]
    assert missing == 1 and json.loads(error)["error"]["code"] == "message_not_found"


async def test_requeue_makes_a_failed_message_due_again_and_refuses_a_delivered_one(
    harness: Harness,
):
    await harness.with_store(lambda s: seed_outbound(s, "m-failed", "failed", "HTTP_402"))
    await harness.with_store(lambda s: seed_outbound(s, "m-delivered", "delivered"))

    code, text = await run("requeue", "m-failed")
    refused, error = await run("requeue", "m-delivered", "--json")

    assert code == 0 and "re-queued m-failed" in text
    item = await harness.with_store(lambda s: s.get_item("outbound", "m-failed"))
    assert item.state == PENDING and item.due_at <= time.time() and item.lease is None
    assert item.data["status"] is None and item.data["stage"] == "send"
    assert item.data["requeues"] == 1
    assert refused == 1 and json.loads(error)["error"]["code"] == "message_delivered"
    kept = await harness.with_store(lambda s: s.get_item("outbound", "m-delivered"))
    assert kept.state == DONE


async def test_unroutable_lists_kept_replies_then_reroute_and_discard_clear_them(
    harness: Harness,
):
    await harness.with_store(lambda s: seed_unroutable(s, "gw-1", "09170000001"))
    await harness.with_store(lambda s: seed_unroutable(s, "gw-2", "09170000002"))

    code, text = await run("unroutable")
    _, as_json = await run("unroutable", "--json")

    assert code == 0 and "gw:gw-1" in text and "text gw-2" in text and "0000001" not in text
    assert [m["from"] for m in json.loads(as_json)] == ["********0001", "********0002"]
    assert (await run("reroute", "gw:gw-1", LOCATION))[0] == 0
    assert (await run("discard", "gw:gw-2"))[0] == 0
    assert await run("unroutable") == (0, "no unroutable inbound SMS\n")
    rerouted = await harness.with_store(lambda s: InboxRepository(s).get("gw:gw-1"))
    assert (rerouted.location_id, rerouted.status) == (LOCATION, "pending")
    assert (await run("discard", "gw:gw-2"))[0] == 1


async def test_sender_id_sets_and_clears_a_locations_sender_id(harness: Harness):
    await harness.seed_installation()

    code, text = await run("sender-id", LOCATION, "ACME")
    assert code == 0 and "ACME" in text
    stored = await harness.with_store(
        lambda s: LocationSettingsRepository(s, TokenCipher(ENCRYPTION_KEY.encode())).get(LOCATION)
    )
    assert stored.sender_id == "ACME"

    invalid, _ = await run("sender-id", LOCATION, "NOT VALID!")
    cleared, as_json = await run("sender-id", LOCATION, "--clear", "--json")

    assert invalid == 1
    assert cleared == 0 and json.loads(as_json)["effective_sender_id"] == "CASTTEST"


async def test_sender_id_checks_the_sender_with_cast_and_takes_a_channel(harness: Harness):
    await harness.seed_installation()
    harness.cast.approve(CAST_KEY, "+639170000001", "sim")

    refused, _ = await run("sender-id", LOCATION, "NOPE")
    code, text = await run("sender-id", LOCATION, "09170000001", "--channel", "sim")

    assert refused == 1
    assert code == 0 and "+639170000001 through the sim channel (set by hand)" in text


async def test_check_config_passes_when_the_store_ghl_and_cast_answer(env: dict[str, str]):
    code, text = await run("check-config")
    json_code, as_json = await run("check-config", "--json")

    assert code == 0, text
    lines = text.splitlines()
    assert [line.split()[0:2] for line in lines[:4]] == [
        ["PASS", "settings"],
        ["PASS", "store"],
        ["PASS", "GHL"],
        ["PASS", "Cast"],
    ]
    assert "1000 credits" in text
    assert any(line.startswith("INFO") and "INBOUND_API_KEY" in line for line in lines)
    assert json_code == 0 and json.loads(as_json)["ok"] is True
    secrets = [CAST_KEY, ADMIN_KEY, CLIENT_SECRET, ENCRYPTION_KEY, env.get("MONGO_URI")]
    for secret in filter(None, secrets):
        assert secret not in text + as_json


async def test_check_config_shows_a_cast_key_slowed_down_after_a_429(harness: Harness):
    configured = float(harness.env["CAST_RATE_PER_KEY"])

    async def slow_down(store: Store) -> float:
        return await CastPacer(store, configured, 30).rate_limited(CAST_KEY, configured, 0.0)

    slowed = await harness.with_store(slow_down)
    code, text = await run("check-config")

    assert code == 0 and slowed < configured
    assert f"key {key_fingerprint(CAST_KEY)} (CAST_API_KEY) at {slowed:g} msg/s" in text
    assert CAST_KEY not in text


async def test_check_config_fails_for_a_refused_cast_key_and_an_unreachable_ghl(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CAST_API_KEY", "cast_" + "cd" * 32)
    monkeypatch.setenv("GHL_API_URL", "http://127.0.0.1:9")

    code, text = await run("check-config")

    assert code == 1
    assert "FAIL  GHL" in text and "not reachable" in text
    assert "FAIL  Cast" in text and "CAST_API_KEY refused" in text and "401" in text
    assert "PASS  store" in text and "cd" * 32 not in text


async def test_check_config_names_each_bad_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("GHL_", "CAST_", "MONGO_", "ADMIN_", "INBOUND_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CAST_API_KEY", "not-a-cast-key-secret")

    code, text = await run("check-config")
    other, _ = await run("installations")

    assert code == 1 and other == 2
    assert "FAIL  settings  CAST_API_KEY: must be a Cast API key" in text
    assert "GHL_CLIENT_ID" in text and "not-a-cast-key-secret" not in text


@pytest.mark.process  # the console script as a process
async def test_the_console_script_runs_as_its_own_process(harness: Harness, tmp_path: Path):
    await harness.seed_installation()
    script = Path(sys.executable).parent / "cast-ghl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    result = subprocess.run(
        [*command, "installations", "--json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [row["location_id"] for row in json.loads(result.stdout)] == [LOCATION]


async def test_a_command_never_creates_an_empty_embedded_database(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("MONGO_URI", "")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "wrong-dir"))

    code, _ = await run("installations")
    check, text = await run("check-config")

    assert code == 1 and not (tmp_path / "wrong-dir").exists()
    assert check == 0 and "no database yet" in text


async def seed_optout(store: Store, phone: str) -> None:
    optout = OptOut(location_id=LOCATION, phone=phone, source="cast", at=1.8e9, recorded_at=1.8e9)
    assert await OptOutList(store).add(optout)


async def test_optouts_lists_masked_numbers_and_lift_optout_takes_one_off(harness: Harness):
    await harness.with_store(lambda s: seed_optout(s, "+639171234567"))

    code, text = await run("optouts", LOCATION)
    lifted, said = await run("lift-optout", LOCATION, "09171234567", "--reason", "by email")
    missing, error = await run(
        "lift-optout", LOCATION, "09171234567", "--reason", "again", "--json"
    )
    _, empty = await run("optouts", LOCATION)

    assert code == 0 and "*******4567" in text and "cast" in text and "9171234567" not in text
    assert lifted == 0 and "taken off the opt-out list" in said and "9171234567" not in said
    assert missing == 1 and json.loads(error)["error"]["code"] == "optout_not_found"
    assert empty.strip() == f"no opt-outs in {LOCATION}"
