"""The `cast-ghl` operator CLI against a real database (SQLite, and MongoDB through the wire
server), seeded through the same repositories the bridge uses."""

import asyncio
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import cli
from app.cast.keys import key_label
from app.cast.pacing import CastPacer
from app.config import env_example
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import (
    CAST_KEY,
    CIPHER,
    CLIENT_ID,
    CLIENT_SECRET,
    ENCRYPTION_KEY,
    LOCATION,
    Harness,
    bridge_env,
)
from app.devkit.server_thread import ServerThread
from app.ghl.client import GHLError
from app.ghl.schemas import ProviderOutboundMessage
from app.ghl.scopes import DEFAULT_SCOPES
from app.inbound.repository import InboxRepository
from app.inbound.schemas import InboundPayload, InboundSMS
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.metrics import Counters
from app.oauth.crypto import TokenCipher
from app.oauth.repository import InstallationRepository
from app.oauth.tokens import TokenService
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from app.outbound.repository import OutboxRepository, RefusedMessages
from app.outbound.schemas import RefusedMessage
from app.outbound.service import build_message
from app.store import DONE, PENDING, Store
from app.store.sqlite import SQLiteStore
from tests.conftest import started
from tests.support import ROOT
from tests.support.units import FakeGHL as ScriptedGHL
from tests.support.units import installations, unit_settings

ADMIN_KEY = "admin-cli-key-3a8f0e2d77"
ISO_SECOND = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


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


async def seed_unroutable(store: Store, gateway_id: str, sender: str, to: str = "CASTTEST") -> None:
    inbox = InboxRepository(store)
    now = time.time()
    payload = InboundPayload.model_validate(
        {"from": sender, "message": f"text {gateway_id}", "to": to, "id": gateway_id}
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


async def test_the_cli_shows_every_time_in_utc_iso_to_the_second(harness: Harness):
    await harness.seed_installation()
    await harness.with_store(lambda s: seed_outbound(s, "m-times", "failed", "HTTP_402"))

    _, message = await run("message", "m-times", "--json")
    _, installations = await run("installations", "--json")
    _, text = await run("message", "m-times")

    shown, (row,) = json.loads(message), json.loads(installations)
    times = [shown["received_at"], shown["finished_at"], row["expires_at"], row["installed_at"]]
    times += [event["at"] for event in shown["history"]]
    assert all(re.fullmatch(ISO_SECOND, t) for t in times), times
    assert re.search(rf"received   {ISO_SECOND}", text)


async def test_backup_copies_the_embedded_database_readable_by_its_owner_only(
    harness: Harness, tmp_path: Path, backend: str
):
    if backend == "mongodb":
        code, _ = await run("backup", "--to", str(tmp_path / "backups"))
        assert code == 1  # mongodump, as docs/operations.md says
        return
    await harness.seed_installation()

    code, as_json = await run("backup", "--to", str(tmp_path / "backups"), "--json")

    target = Path(json.loads(as_json)["path"])
    assert code == 0 and re.fullmatch(r"cast-ghl-\d{8}T\d{6}Z\.sqlite3", target.name)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    async with started(SQLiteStore(target)) as copy:
        (row,) = await InstallationRepository(copy, CIPHER).summaries()
    assert row.location_id == LOCATION


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


async def test_unroutable_shows_the_receiving_number_in_full_and_the_customers_masked(
    harness: Harness,
):
    await harness.with_store(lambda s: seed_unroutable(s, "gw-1", "09171234567", "09170000009"))

    _, text = await run("unroutable")
    _, as_json = await run("unroutable", "--json")

    (row,) = json.loads(as_json)
    assert (row["from"], row["to"]) == ("********4567", "09170000009")
    assert "09170000009" in text and "9171234567" not in text


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


async def test_sender_id_assigns_one_sender_to_locations_of_one_agency_and_says_so(
    harness: Harness,
):
    await harness.seed_installation("loc-b1", company_id="agency-b")
    await harness.seed_installation("loc-b2", company_id="agency-b")
    assert (await run("sender-id", "loc-b1", "09170000002"))[0] == 0

    code, text = await run("sender-id", "loc-b2", "09170000002")
    _, as_json = await run("sender-id", "loc-b2", "09170000002", "--json")

    assert code == 0 and "shared with loc-b1 (same agency)" in text
    answer = json.loads(as_json)
    assert answer["shared_with"] == ["loc-b1"] and answer["assigned_senders"] == ["09170000002"]


async def test_sender_id_refuses_a_sender_assigned_to_another_agency_and_saves_nothing(
    harness: Harness,
):
    await harness.seed_installation("loc-b", company_id="agency-b")
    await harness.seed_installation("loc-a", company_id="agency-a")
    assert (await run("sender-id", "loc-b", "09170000002"))[0] == 0

    refused, as_json = await run("sender-id", "loc-a", "09170000002", "--json")

    assert refused == 1
    error = json.loads(as_json)["error"]
    assert error["code"] == "sender_id_assigned_elsewhere" and "loc-b" in error["message"]
    stored = await harness.with_store(lambda s: LocationSettingsRepository(s, CIPHER).get("loc-a"))
    assert stored is None


async def test_sender_id_unassign_takes_one_sender_away_and_keeps_the_others(harness: Harness):
    await harness.seed_installation()
    await run("sender-id", LOCATION, "ACME")
    await run("sender-id", LOCATION, "BETA")

    code, as_json = await run("sender-id", LOCATION, "BETA", "--unassign", "--json")
    again, _ = await run("sender-id", LOCATION, "BETA", "--unassign")

    answer = json.loads(as_json)
    assert code == 0 and answer["assigned_senders"] == ["ACME"]
    assert (answer["sender_id"], answer["effective_sender_id"]) == (None, "CASTTEST")
    assert again == 1  # no longer assigned


async def test_sender_id_checks_the_sender_with_cast_and_takes_a_channel(harness: Harness):
    await harness.seed_installation()
    harness.cast.approve(CAST_KEY, "+639170000001", "sim")

    refused, _ = await run("sender-id", LOCATION, "NOPE")
    code, text = await run("sender-id", LOCATION, "09170000001", "--channel", "sim")

    assert refused == 1
    assert code == 0 and "+639170000001 through the sim channel (set by hand)" in text


async def test_check_config_passes_when_the_store_ghl_and_cast_answer(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BASE_URL", "https://bridge.example.com")
    code, text = await run("check-config")
    json_code, as_json = await run("check-config", "--json")

    assert code == 0, text
    lines = text.splitlines()
    for name in ("settings", "BASE_URL", "store", "GHL", "GHL client", "Cast", "credits"):
        assert _check(text, name).startswith("PASS"), name
    assert {line.split()[0] for line in lines} <= {"PASS", "INFO"}, text
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
    assert f"key {key_label(CAST_KEY)} (CAST_API_KEY) at {slowed:g} msg/s" in text
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


def _check(text: str, name: str) -> str:
    """The line of one check in check-config's output."""
    return next(line for line in text.splitlines() if line[6:].startswith(name + " "))


async def test_check_config_warns_when_the_scopes_lack_what_agency_installs_need(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    six = DEFAULT_SCOPES.replace(" oauth.readonly", "").replace(" oauth.write", "")
    monkeypatch.setenv("GHL_SCOPES", six)
    code, text = await run("check-config")
    assert code == 0, text
    line = _check(text, "scopes")
    assert line.startswith("WARN") and "agency installs need oauth.readonly, oauth.write" in line


async def test_check_config_asks_for_the_inbound_scopes_only_when_inbound_is_on(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GHL_SCOPES", DEFAULT_SCOPES.replace("conversations.readonly", ""))
    _, without_inbound = await run("check-config")
    monkeypatch.setenv("INBOUND_API_KEY", "inbound-key-0123456789abcdef")
    _, with_inbound = await run("check-config")
    assert _check(without_inbound, "scopes").startswith("PASS")
    line = _check(with_inbound, "scopes")
    assert line.startswith("WARN") and "inbound SMS need conversations.readonly" in line


async def test_check_config_fails_once_ghl_refused_the_apps_client_credentials(
    harness: Harness,
):
    body = '{"error":"invalid_client","error_description":"Invalid client credentials"}'

    async def refused(store: Store) -> None:
        tokens = TokenService(
            unit_settings(), store, installations(store), ScriptedGHL(), Counters()
        )
        await tokens.client_rejected("location:loc-1", GHLError("401", status=401, body=body))

    async def nothing(store: Store) -> None:
        return None

    await harness.with_store(nothing)  # the database exists, nothing noted
    _, before = await run("check-config")
    await harness.with_store(refused)
    code, text = await run("check-config")
    assert _check(before, "GHL app").startswith("PASS")
    line = _check(text, "GHL app")
    assert code == 1 and line.startswith("FAIL")
    assert "HTTP 401 invalid_client: Invalid client credentials" in line
    assert "no installation was flagged" in line


async def test_check_config_names_each_bad_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("GHL_", "CAST_", "MONGO_", "ADMIN_", "INBOUND_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CAST_API_KEY", "not-a-cast-key-secret")

    code, text = await run("check-config")
    other, _ = await run("installations")

    assert code == other == 2  # docs/operations.md: 2 for invalid settings
    assert "FAIL  settings  CAST_API_KEY: must be a Cast API key" in text
    assert "GHL_CLIENT_ID" in text and "not-a-cast-key-secret" not in text


@pytest.mark.process  # the console script as a process
async def test_check_config_fails_for_env_example_placeholders(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    for name in ("GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "CAST_API_KEY"):
        monkeypatch.setenv(name, env_example(name.lower()) or "")

    code, text = await run("check-config")

    assert code == 1
    placeholders = [line for line in text.splitlines() if line[6:].startswith("placeholder")]
    assert [line.split()[2] for line in placeholders] == [
        "GHL_CLIENT_ID",
        "GHL_CLIENT_SECRET",
        "CAST_API_KEY",
    ]
    assert all(line.startswith("FAIL") for line in placeholders)


async def test_check_config_verifies_the_client_secret_with_ghl(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fakes: tuple[FakeCast, FakeGHL, str, str]
):
    monkeypatch.setenv("GHL_CLIENT_SECRET", "a-wrong-client-secret-5e1f")

    code, text = await run("check-config")

    line = _check(text, "GHL client")
    assert code == 1 and line.startswith("FAIL") and "invalid_client" in line
    assert "a-wrong-client-secret-5e1f" not in text
    assert not fakes[1].used_refresh_tokens  # the probe refreshed nothing


async def test_check_config_says_when_ghl_cannot_verify_the_client(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fakes: tuple[FakeCast, FakeGHL, str, str]
):
    fakes[1].token_script.append(503)

    code, text = await run("check-config")

    line = _check(text, "GHL client")
    assert code == 0 and line.startswith("INFO") and "cannot verify" in line


@pytest.mark.parametrize(
    ("base_url", "said"),
    [
        ("http://localhost:3002", "this machine: GHL cannot reach"),
        ("http://127.0.0.1", "this machine: GHL cannot reach"),
        ("http://bridge.example.com", "is not https"),
    ],
)
async def test_check_config_warns_about_a_base_url_ghl_cannot_use(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, base_url: str, said: str
):
    monkeypatch.setenv("BASE_URL", base_url)

    code, text = await run("check-config")

    line = _check(text, "BASE_URL")
    assert code == 0 and line.startswith("WARN") and said in line


async def test_check_config_warns_when_the_default_key_is_under_low_credit_threshold(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, harness: Harness
):
    await harness.with_store(lambda store: asyncio.sleep(0))  # the database exists
    monkeypatch.setenv("LOW_CREDIT_THRESHOLD", "5000")  # the fake account has 1000

    code, text = await run("check-config")

    line = _check(text, "credits")
    assert code == 0 and line.startswith("WARN")
    assert "CAST_API_KEY has 1000, under LOW_CREDIT_THRESHOLD=5000" in line


async def test_check_config_warns_for_each_location_under_its_own_threshold(
    harness: Harness, fakes: tuple[FakeCast, FakeGHL, str, str], monkeypatch: pytest.MonkeyPatch
):
    own_key = "cast_" + "6b" * 32
    fakes[0].api_keys.add(own_key)
    fakes[0].credits = 120  # every account of the fake
    monkeypatch.setenv("LOW_CREDIT_THRESHOLD", "100")  # the default key's: above it

    async def own_accounts(store: Store) -> None:
        repository = LocationSettingsRepository(store, CIPHER)
        for location_id, threshold in (("loc-low", 200), ("loc-fine", 100)):
            await repository.put(
                LocationSettings(
                    location_id=location_id,
                    cast_api_key=own_key,
                    low_credit_threshold=threshold,
                    updated_at=time.time(),
                )
            )

    await harness.with_store(own_accounts)
    code, text = await run("check-config")

    credits = [line for line in text.splitlines() if line[6:].startswith("credits")]
    assert code == 0
    assert [line.split(None, 2)[::2] for line in credits] == [
        ["WARN", "loc-low's own Cast key has 120, under its threshold 200"]
    ]
    assert own_key not in text


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


async def test_optouts_say_what_keeps_each_number_listed_and_a_lift_says_what_happens_in_ghl(
    harness: Harness,
):
    stop = OptOut(
        location_id=LOCATION, phone="+639171234567", source="keyword", at=1.8e9, recorded_at=1.8e9
    )
    dnd = OptOut(
        location_id=LOCATION, phone="+639181234567", source="ghl", at=1.8e9, recorded_at=1.8e9
    )
    await harness.with_store(lambda s: OptOutList(s).add(stop))
    await harness.with_store(lambda s: OptOutList(s).add(dnd))

    _, text = await run("optouts", LOCATION)
    _, lifted_stop = await run("lift-optout", LOCATION, "09171234567", "--reason", "by email")
    _, lifted_dnd = await run("lift-optout", LOCATION, "09181234567", "--reason", "by email")

    assert "clearing SMS DND in GHL does not" in text and "SMS DND is cleared in GHL" in text
    assert "the SMS DND the bridge set in GHL is being cleared" in lifted_stop
    assert "the SMS DND was set in GHL: clear it there" in lifted_dnd


async def test_refused_lists_the_messages_ghl_could_not_be_told_about(harness: Harness):
    refused = RefusedMessage(
        message_id="m-stranger",
        location_id="loc-stranger",
        received_at=1.8e9,
        refused_at=1.8e9 + 1,
        reason="Cast SMS is not installed for location loc-stranger: install the app",
    )
    await harness.with_store(lambda s: RefusedMessages(s).record(refused))

    code, text = await run("refused")
    _, as_json = await run("refused", "--json")

    assert code == 0 and "m-stranger" in text and "loc-stranger" in text
    assert json.loads(as_json)[0]["message_id"] == "m-stranger"
