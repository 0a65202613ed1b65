"""TOKEN_ENCRYPTION_KEY rotated or lost, on the running bridge: old records still work under a
key list, a record no key decrypts is replaced by a re-install and fails sends, never a 500."""

import asyncio
import io

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
