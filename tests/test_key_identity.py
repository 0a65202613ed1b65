"""A Cast key's identity in caches, pacing and stored key states: the full HMAC-SHA256 of the key
under a server secret; its 12-digit label only names it in logs and metrics (issue 28)."""

import hashlib
import hmac
import time

import pytest
from cryptography.fernet import Fernet

from app.cast.client import CastError
from app.cast.keys import KEY_SECRET_PURPOSE, key_fingerprint, key_label, use_key_secret
from app.cast.pacing import KEY_PREFIX, CastPacer
from app.cast.repository import COLLECTION as KEY_STATES
from app.cast.repository import KeyStates
from app.oauth.crypto import TokenCipher
from app.pacing import COLLECTION as PACING_STATES
from app.store import Store
from tests.support.doubles import nothing_to_check

SECRET = b"s" * 32


@pytest.fixture
def secret() -> bytes:
    use_key_secret(SECRET)
    return SECRET


def test_a_key_identity_is_the_full_hmac_sha256_of_the_key_under_the_server_secret(secret):
    expected = hmac.new(secret, b"cast_live_a", hashlib.sha256).hexdigest()
    assert key_fingerprint("cast_live_a") == expected and len(expected) == 64


def test_a_key_has_another_identity_under_another_server_secret(secret):
    before = key_fingerprint("cast_live_a")
    use_key_secret(b"t" * 32)
    assert key_fingerprint("cast_live_a") != before


def test_a_key_label_is_the_first_12_digits_of_its_identity(secret):
    assert key_label("cast_live_a") == key_fingerprint("cast_live_a")[:12]


def test_processes_with_the_same_encryption_key_derive_the_same_key_secret():
    key = Fernet.generate_key()
    first, second = TokenCipher(key), TokenCipher(key)
    assert first.derived_secret(KEY_SECRET_PURPOSE) == second.derived_secret(KEY_SECRET_PURPOSE)
    assert first.derived_secret(KEY_SECRET_PURPOSE) != TokenCipher(
        Fernet.generate_key()
    ).derived_secret(KEY_SECRET_PURPOSE)


def test_the_key_secret_is_derived_from_the_newest_encryption_key():
    new, old = Fernet.generate_key(), Fernet.generate_key()
    rotating = TokenCipher(new, old).derived_secret(KEY_SECRET_PURPOSE)
    assert rotating == TokenCipher(new).derived_secret(KEY_SECRET_PURPOSE)


async def test_a_keys_pacing_slot_and_limit_state_are_stored_under_its_full_identity(
    store: Store,
):
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)
    await pacer.before_send("cast_live_a", nothing_to_check)
    await pacer.rate_limited("cast_live_a", paced_at=10.0, retry_after=0.0)

    name = KEY_PREFIX + key_fingerprint("cast_live_a")
    now = time.time()  # the send took a slot under that name: the next one is an interval on
    assert await store.reserve_slot(name, now=now, interval=100.0) > now + 50
    assert await store.get_doc(PACING_STATES, name) is not None


async def test_a_limit_state_stored_under_a_12_digit_id_of_before_is_ignored(store: Store):
    legacy = KEY_PREFIX + hashlib.sha256(b"cast_live_a").hexdigest()[:12]
    slowed = {"rate": 2.0, "ceiling": 3.0, "changed_at": 1e12, "blocked_until": 0.0}
    await store.put_doc(PACING_STATES, legacy, slowed)
    pacer = CastPacer(store, per_key_rate=10, ip_rate=1000)

    assert (await pacer.before_send("cast_live_a", nothing_to_check)).rate == 10.0
    assert await pacer.rates() == {}


async def test_a_key_marked_broken_is_stored_under_its_full_identity(store: Store):
    refused = CastError("Invalid API key", status=401, code="INVALID_API_KEY", retryable=False)
    await KeyStates(store).refused("cast_live_a", refused)

    assert await store.get_doc(KEY_STATES, key_fingerprint("cast_live_a")) is not None
