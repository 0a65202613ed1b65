"""The identity of a Cast API key: the one name caches, pacing and stored key states know a key by.

A key is chosen by a tenant, so its identity must not be something a tenant can aim at: it is
the full HMAC-SHA256 of the key under a server secret (`use_key_secret`, set by the composition
root from the token cipher, so every process of a cluster agrees). `key_label`, its first 12
hex digits, names a key in logs and metrics only, never as a lookup key.
"""

import functools
import hashlib
import hmac

LABEL_LENGTH = 12
KEY_SECRET_PURPOSE = "cast-key-identity"  # noqa: S105 (a label: the secret derived for it)

_secret: bytes | None = None


def use_key_secret(secret: bytes) -> None:
    """The server secret key identities are computed with (every process of a cluster must use
    the same one)."""
    global _secret
    if secret != _secret:
        _secret = secret
        key_fingerprint.cache_clear()


@functools.lru_cache(maxsize=1024)  # asked on every webhook and send: an HMAC each time
def key_fingerprint(api_key: str) -> str:
    """The key's identity: 64 hex digits."""
    if _secret is None:
        raise RuntimeError("key identity asked before use_key_secret() (composition root)")
    return hmac.new(_secret, api_key.encode(), hashlib.sha256).hexdigest()


def key_label(api_key: str) -> str:
    """The short name of a key in logs and metrics (a prefix of its identity)."""
    return key_fingerprint(api_key)[:LABEL_LENGTH]


def legacy_fingerprint(api_key: str) -> str:
    """The 12-digit SHA-256 id a key had before issue 28: only to read what was stored under it
    then (the Cast opt-out sync's ledger)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:LABEL_LENGTH]


def label_of(fingerprint: str) -> str:
    """`key_label` of the key whose identity is `fingerprint`."""
    return fingerprint[:LABEL_LENGTH]
