"""Encryption at rest for OAuth tokens (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`)."""

import hashlib
import hmac
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings

log = logging.getLogger(__name__)

LOCAL_KEY_FILE = "token-encryption.key"
FINGERPRINT_PREFIX = b"cast-ghl encryption key fingerprint:"


class UndecryptableError(ValueError):
    """No configured key decrypts the value (the key it was written with is lost or removed)."""


class KeyNotHeld(Exception):
    """No key of this process decrypts a record, but other bridges lately held keys it lacks
    (`keys`: their fingerprints): probably written with one of them, so wait rather than
    treat the record as lost."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.message = (
            f"this bridge lacks TOKEN_ENCRYPTION_KEY {', '.join(keys)} that another bridge "
            "holds: restart it with the newest key list; the work waits and is retried"
        )
        super().__init__(self.message)


class TokenCipher:
    """Encrypts with the newest key (the first); decrypts with any of them (MultiFernet), so
    TOKEN_ENCRYPTION_KEY can be rotated: put the new key first, keep the old ones after it."""

    def __init__(self, *keys: bytes) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._newest = keys[0]
        self.fingerprints = tuple(key_fingerprint(key) for key in keys)  # newest first

    @property
    def newest_fingerprint(self) -> str:
        return self.fingerprints[0]

    def derived_secret(self, purpose: str) -> bytes:
        """A secret for `purpose` derived from the newest key (HMAC-SHA256): the same in every
        process that has the same TOKEN_ENCRYPTION_KEY (or, embedded, the same key file)."""
        return hmac.new(self._newest, purpose.encode(), hashlib.sha256).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableError(
                "token cannot be decrypted: was TOKEN_ENCRYPTION_KEY changed?"
            ) from exc

    def rotated(self, data: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
        """`data` with its encrypted `fields` encrypted again with the newest key
        (UndecryptableError if no configured key decrypts one of them)."""
        out = dict(data)
        for field in fields:
            if out.get(field):
                try:
                    out[field] = self._fernet.rotate(out[field].encode()).decode()
                except InvalidToken as exc:
                    raise UndecryptableError(f"{field} cannot be decrypted with any key") from exc
        return out


def key_fingerprint(key: bytes) -> str:
    """What may be shown or stored about an encryption key: 16 hex digits of a hash of it."""
    return hashlib.sha256(FINGERPRINT_PREFIX + key.strip()).hexdigest()[:16]


def _local_key(data_dir: Path) -> bytes:
    """Embedded mode only: generate a key once and keep it beside the SQLite file."""
    path = data_dir.resolve() / LOCAL_KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    log.warning("generated a token encryption key", extra={"path": str(path)})
    return key


def build_cipher(settings: Settings) -> TokenCipher:
    if settings.token_encryption_key is not None:
        return TokenCipher(*(key.encode() for key in settings.encryption_keys))
    return TokenCipher(_local_key(settings.data_dir))
