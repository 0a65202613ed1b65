"""TOKEN_ENCRYPTION_KEY rotation (a comma-separated list, newest first) and records no key
decrypts, on both backends through the repositories the bridge uses."""

import os
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from app.cast.accounts import KEY_NOT_HELD_CODE, CastAccounts
from app.cast.client import CastError
from app.config import SettingsError, load_settings
from app.devkit.harness import CAST_KEY
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.crypto import KeyNotHeld, TokenCipher, UndecryptableError, key_fingerprint
from app.oauth.keyholders import COLLECTION as KEY_HOLDERS
from app.oauth.keyholders import (
    LIVE_SECONDS,
    KeyHeartbeat,
    KeyHolder,
    KeyHolderRepository,
    live_bridges_lacking,
)
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.schemas import Installation
from app.store import Store
from tests.support.doubles import unknown_senders

OLD, NEW = Fernet.generate_key(), Fernet.generate_key()
OWN_KEY = "cast_" + "7e" * 32


def installation(location_id: str = "loc-1") -> Installation:
    now = time.time()
    return Installation(
        id=location_key(location_id),
        kind="location",
        location_id=location_id,
        access_token="access-1",
        refresh_token="refresh-1",
        expires_at=now + 3600,
        installed_at=now,
        updated_at=now,
    )


def required(**extra: str):
    return load_settings(ghl_client_id="id", ghl_client_secret="s", cast_api_key=CAST_KEY, **extra)


# Settings ----------------------------------------------------------------------------------
def test_a_comma_separated_key_list_is_read_newest_first():
    settings = required(token_encryption_key=f" {NEW.decode()} , {OLD.decode()} ")

    assert settings.encryption_keys == [NEW.decode(), OLD.decode()]


def test_a_bad_key_in_the_list_is_named_by_its_position_without_echoing_it():
    with pytest.raises(SettingsError) as caught:
        required(token_encryption_key=f"{NEW.decode()},not-a-key")

    assert "TOKEN_ENCRYPTION_KEY: key 2 of 2 must be urlsafe base64" in str(caught.value)
    assert "not-a-key" not in str(caught.value)


# The cipher ----------------------------------------------------------------------------------
def test_the_cipher_encrypts_with_the_newest_key_and_decrypts_with_any():
    rotated = TokenCipher(NEW, OLD)

    written = rotated.encrypt("secret")

    assert rotated.decrypt(TokenCipher(OLD).encrypt("secret")) == "secret"
    assert TokenCipher(NEW).decrypt(written) == "secret"


def test_a_value_no_key_decrypts_raises_undecryptable_not_invalid_token():
    with pytest.raises(UndecryptableError):
        TokenCipher(NEW).decrypt(TokenCipher(OLD).encrypt("secret"))


# Repositories, both backends -----------------------------------------------------------------
async def test_an_installation_written_under_the_old_key_is_read_and_rewritten_with_the_new(
    store: Store,
):
    await InstallationRepository(store, TokenCipher(OLD)).put(installation())
    rotated = InstallationRepository(store, TokenCipher(NEW, OLD))

    found = await rotated.get(location_key("loc-1"))
    assert found is not None and found[0].access_token == "access-1"
    await rotated.put(found[0])

    again = await InstallationRepository(store, TokenCipher(NEW)).get(location_key("loc-1"))
    assert again is not None and again[0].refresh_token == "refresh-1"


async def test_reencrypt_moves_every_record_to_the_newest_key_and_counts_the_lost(store: Store):
    await InstallationRepository(store, TokenCipher(OLD)).put(installation("loc-1"))
    await InstallationRepository(store, TokenCipher(Fernet.generate_key())).put(
        installation("loc-lost")
    )
    await LocationSettingsRepository(store, TokenCipher(OLD)).put(
        LocationSettings(location_id="loc-1", cast_api_key=OWN_KEY, updated_at=time.time())
    )
    cipher = TokenCipher(NEW, OLD)

    assert await InstallationRepository(store, cipher).reencrypt() == (1, 1)
    assert await LocationSettingsRepository(store, cipher).reencrypt() == (1, 0)

    newest = TokenCipher(NEW)
    found = await InstallationRepository(store, newest).get(location_key("loc-1"))
    assert found is not None and found[0].access_token == "access-1"
    settings = await LocationSettingsRepository(store, newest).get("loc-1")
    assert settings is not None and settings.cast_api_key == OWN_KEY


async def test_an_installation_no_key_decrypts_reads_as_needing_reinstall_without_tokens(
    store: Store, caplog: pytest.LogCaptureFixture
):
    location_id = f"loc-{uuid.uuid4().hex[:8]}"  # the error is logged once per record
    await InstallationRepository(store, TokenCipher(OLD)).put(installation(location_id))

    found = await InstallationRepository(store, TokenCipher(NEW)).get(location_key(location_id))

    assert found is not None
    lost, rev = found
    assert lost.needs_reauth and "install the app again" in (lost.reauth_reason or "")
    assert (lost.access_token, lost.refresh_token, rev) == ("", None, 1)
    assert "installation cannot be decrypted" in caplog.text


async def test_a_location_cast_key_no_key_decrypts_fails_its_sends_with_a_reason(store: Store):
    await LocationSettingsRepository(store, TokenCipher(OLD)).put(
        LocationSettings(location_id="loc-1", cast_api_key=OWN_KEY, updated_at=time.time())
    )
    accounts = CastAccounts(
        required(), LocationSettingsRepository(store, TokenCipher(NEW)), unknown_senders()
    )

    with pytest.raises(CastError) as caught:
        await accounts.account_for("loc-1")

    assert caught.value.code == "CAST_KEY_UNREADABLE" and not caught.value.retryable
    assert "enter it again on the Cast SMS settings page" in caught.value.message


# Key heartbeats, both backends ----------------------------------------------------------------
async def test_a_bridge_heartbeat_records_key_fingerprints_never_the_keys(store: Store):
    beat = KeyHeartbeat(KeyHolderRepository(store), TokenCipher(NEW, OLD).fingerprints, time.time)

    await beat.beat()

    [doc] = await store.list_docs(KEY_HOLDERS)
    assert doc.data["keys"] == [key_fingerprint(NEW), key_fingerprint(OLD)]
    assert doc.data["pid"] == os.getpid() and doc.data["host"]
    assert NEW.decode() not in repr(doc.data) and OLD.decode() not in repr(doc.data)
    await beat.forget()
    assert await store.list_docs(KEY_HOLDERS) == []


async def test_only_live_bridges_without_the_newest_key_are_lacking(store: Store):
    holders = KeyHolderRepository(store)
    now = time.time()
    old_only = (key_fingerprint(OLD),)
    await holders.beat(KeyHolder("a", "host-a", 1, old_only, now - 10))
    await holders.beat(KeyHolder("b", "host-b", 2, TokenCipher(NEW, OLD).fingerprints, now))
    await holders.beat(KeyHolder("gone", "host-c", 3, old_only, now - LIVE_SECONDS - 1))

    lacking = await live_bridges_lacking(holders, key_fingerprint(NEW), now)

    assert [h.id for h in lacking] == ["a"]


async def test_a_record_under_a_key_another_bridge_holds_is_not_taken_for_lost(store: Store):
    location_id = f"loc-{uuid.uuid4().hex[:8]}"
    rotated = TokenCipher(NEW, OLD)
    await InstallationRepository(store, rotated).put(installation(location_id))
    await KeyHolderRepository(store).beat(
        KeyHolder("b", "host-b", 2, rotated.fingerprints, time.time())
    )
    behind = InstallationRepository(store, TokenCipher(OLD))

    with pytest.raises(KeyNotHeld) as caught:
        await behind.get_usable(location_key(location_id))

    assert caught.value.keys == [key_fingerprint(NEW)]
    assert "restart it with the newest key list" in caught.value.message


async def test_a_record_no_known_key_decrypts_still_reads_as_needing_reinstall(store: Store):
    location_id = f"loc-{uuid.uuid4().hex[:8]}"
    await InstallationRepository(store, TokenCipher(Fernet.generate_key())).put(
        installation(location_id)
    )
    await KeyHolderRepository(store).beat(KeyHolder("a", "host-a", 1, (key_fingerprint(OLD),), 0))

    found = await InstallationRepository(store, TokenCipher(OLD)).get_usable(
        location_key(location_id)
    )

    assert found is not None and found[0].needs_reauth


async def test_a_location_cast_key_under_a_key_another_bridge_holds_is_retried_not_lost(
    store: Store,
):
    rotated = TokenCipher(NEW, OLD)
    await LocationSettingsRepository(store, rotated).put(
        LocationSettings(location_id="loc-1", cast_api_key=OWN_KEY, updated_at=time.time())
    )
    await KeyHolderRepository(store).beat(
        KeyHolder("b", "host-b", 2, rotated.fingerprints, time.time())
    )
    behind = CastAccounts(
        required(), LocationSettingsRepository(store, TokenCipher(OLD)), unknown_senders()
    )

    with pytest.raises(CastError) as caught:
        await behind.account_for("loc-1")

    assert caught.value.code == KEY_NOT_HELD_CODE and caught.value.retryable
    assert key_fingerprint(NEW) in caught.value.message
    assert "enter it again" not in caught.value.message
