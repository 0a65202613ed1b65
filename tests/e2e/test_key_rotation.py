"""TOKEN_ENCRYPTION_KEY rotated or lost, on the running bridge: old records still work under a
key list, a record no key decrypts is replaced by a re-install and fails sends, never a 500."""

import asyncio
import io
import os
import time

import pytest
from cryptography.fernet import Fernet

from app import cli
from app.devkit.harness import (
    CIPHER,
    ENCRYPTION_KEY,
    LOCATION,
    Harness,
    installation_from_pair,
    webhook,
)
from app.oauth.crypto import TokenCipher
from app.oauth.keyholders import KeyHolder, KeyHolderRepository
from app.oauth.repository import InstallationRepository, location_key
from tests.e2e.test_oauth import get, installation, start_install

LOST = TokenCipher(Fernet.generate_key())


async def seed_under(h: Harness, cipher: TokenCipher, location_id: str = LOCATION) -> None:
    stored = installation_from_pair(h.ghl.issue_pair(location_id), location_id)
    await h.with_store(lambda store: InstallationRepository(store, cipher).put(stored))


async def test_reinstalling_replaces_a_record_no_key_decrypts(harness: Harness):
    await seed_under(harness, LOST, "loc-lost")
    harness.start()
    query = await start_install(harness)
    harness.ghl.add_code("code-lost", "loc-lost")

    page = await get(harness, "/oauth/callback", code="code-lost", state=query["state"])

    assert page.status_code == 200
    stored = await installation(harness, location_key("loc-lost"))
    assert stored is not None and not stored.needs_reauth and stored.access_token
    assert "installation cannot be decrypted" in harness.logs()


async def test_a_message_of_a_location_no_key_decrypts_fails_as_needing_reinstall(
    harness: Harness,
):
    await seed_under(harness, LOST)
    harness.start()

    response = await harness.post(webhook("m-lost"))

    assert response.status_code == 202
    for _ in range(200):
        message = await harness.message("m-lost")
        if message is not None and message.status == "failed":
            break
        await asyncio.sleep(0.05)
    assert message is not None and message.error_code == "REAUTHORIZATION_NEEDED"
    assert harness.cast.sent == [] and "Traceback" not in harness.logs()
    assert harness.logs().count("installation cannot be decrypted") == 1  # once, not per read


async def test_a_rotated_key_list_keeps_old_records_working_and_reencrypt_moves_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    new = Fernet.generate_key().decode()
    harness.env["TOKEN_ENCRYPTION_KEY"] = f"{new},{ENCRYPTION_KEY}"
    await seed_under(harness, CIPHER)  # written under the old key
    harness.start()

    await harness.post(webhook("m-rotated"))

    await harness.wait_for(lambda: harness.statuses_for("m-rotated"), what="delivery")
    for name, value in harness.env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert await cli.run(["reencrypt", "--json"], out=out) == 0
    assert '"installations": 1' in out.getvalue()
    newest = TokenCipher(new.encode())  # the old key can go now
    found = await harness.with_store(
        lambda store: InstallationRepository(store, newest).get(location_key(LOCATION))
    )
    assert found is not None and not found[0].needs_reauth


async def beat_for_another_bridge(h: Harness, cipher: TokenCipher, at: float | None = None) -> None:
    """The heartbeat of a bridge (not this test's) holding `cipher`'s keys."""
    holder = KeyHolder("bridge-2:4242:aa", "bridge-2", 4242, cipher.fingerprints, at or time.time())
    await h.with_store(lambda store: KeyHolderRepository(store).beat(holder))


async def wait_for_heartbeat(h: Harness) -> None:
    for _ in range(100):
        if await h.with_store(lambda store: KeyHolderRepository(store).seen_since(0)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bridge wrote no key heartbeat")


async def waiting_events(h: Harness, message_id: str) -> list[str]:
    message = await h.message(message_id)
    return (
        [e.detail or "" for e in message.history if e.event == "waiting_for_key"] if message else []
    )


async def test_a_message_under_a_key_only_another_bridge_holds_waits_and_sends_after_restart(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("app.outbound.worker.KEY_WAIT_SECONDS", 0.2)
    new = Fernet.generate_key()
    rotated = TokenCipher(new, ENCRYPTION_KEY.encode())
    await seed_under(harness, rotated)  # tokens refreshed by a bridge that has the new key
    await beat_for_another_bridge(harness, rotated)
    harness.start()  # this bridge: the old key only

    await harness.post(webhook("m-waits"))
    for _ in range(200):
        if waited := await waiting_events(harness, "m-waits"):
            break
        await asyncio.sleep(0.05)
    assert "key this bridge lacks" in harness.logs()
    message = await harness.message("m-waits")
    assert message is not None and message.status is None and harness.cast.sent == []
    assert waited and rotated.newest_fingerprint in waited[0]
    assert "REAUTHORIZATION_NEEDED" not in harness.logs()
    harness.stop()

    harness.env["TOKEN_ENCRYPTION_KEY"] = f"{new.decode()},{ENCRYPTION_KEY}"
    harness.start()

    await harness.wait_for(lambda: harness.statuses_for("m-waits"), what="delivery after restart")
    # GHL may hear of it before the bridge has written it down
    await harness.wait_for_message("m-waits", lambda message: message.status == "delivered")


async def test_reencrypt_refuses_while_a_live_bridge_lacks_the_newest_key_and_names_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    new = Fernet.generate_key()
    await seed_under(harness, CIPHER)
    harness.start()  # the old key only: its heartbeat says so
    await wait_for_heartbeat(harness)
    for name, value in harness.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", f"{new.decode()},{ENCRYPTION_KEY}")
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", err)

    code = await cli.run(["reencrypt"], out=out)

    newest = TokenCipher(new).newest_fingerprint
    assert code == 1
    assert f"does not hold the newest TOKEN_ENCRYPTION_KEY (fingerprint {newest})" in err.getvalue()
    assert f"pid {os.getpid()}" in err.getvalue()  # the bridge runs in this test's process
    found = await harness.with_store(
        lambda store: InstallationRepository(store, CIPHER).get(location_key(LOCATION))
    )
    assert found is not None and not found[0].needs_reauth  # still under the old key
    harness.stop()
    assert await cli.run(["reencrypt"], out=out) == 0  # stopped: its heartbeat is gone
