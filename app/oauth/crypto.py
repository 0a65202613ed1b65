"""Encryption at rest for OAuth tokens (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`)."""

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.config import Settings

log = logging.getLogger(__name__)

LOCAL_KEY_FILE = "token-encryption.key"


class TokenCipher:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "token cannot be decrypted: was TOKEN_ENCRYPTION_KEY changed?"
            ) from exc


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
        return TokenCipher(settings.token_encryption_key.get_secret_value().encode())
    return TokenCipher(_local_key(settings.data_dir))
