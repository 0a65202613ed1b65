"""TOKEN_ENCRYPTION_KEY rotation (a comma-separated list, newest first) and records no key
decrypts, on both backends through the repositories the bridge uses."""

import time
import uuid

import pytest
from cryptography.fernet import Fernet

from app.cast.accounts import CastAccounts
from app.cast.client import CastError
from app.config import SettingsError, load_settings
from app.devkit.harness import CAST_KEY
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.crypto import TokenCipher, UndecryptableError
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.schemas import Installation
from app.store import Store

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
    accounts = CastAccounts(required(), LocationSettingsRepository(store, TokenCipher(NEW)))

    with pytest.raises(CastError) as caught:
        await accounts.account_for("loc-1")

    assert caught.value.code == "CAST_KEY_UNREADABLE" and not caught.value.retryable
    assert "enter it again on the Cast SMS settings page" in caught.value.message
