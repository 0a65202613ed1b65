"""Encrypt the way GHL does for custom pages: CryptoJS.AES.encrypt(json, sharedSecret).

CryptoJS's passphrase mode: a random 8-byte salt, EVP_BytesToKey(MD5) -> AES-256-CBC key and
IV, PKCS#7 padding, base64("Salted__" + salt + ciphertext). Written independently of the
bridge's decryptor (app/locations/sso.py) so the two check each other.
"""

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SSO_KEY = "test-shared-secret-4c1d8e2f"


def _key_iv(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    blocks, last = b"", b""
    while len(blocks) < 48:
        last = hashlib.md5(last + passphrase + salt).digest()  # noqa: S324 - CryptoJS's KDF
        blocks += last
    return blocks[:32], blocks[32:48]


def cryptojs_encrypt(plaintext: bytes, passphrase: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(8)
    key, iv = _key_iv(passphrase.encode(), salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(b"Salted__" + salt + ciphertext).decode()


def user_context(
    location_id: str | None = "loc-1",
    *,
    user_id: str = "user-1",
    company_id: str = "company-1",
    role: str = "admin",
    type: str = "location",
    **extra: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": user_id,
        "companyId": company_id,
        "role": role,
        "type": type,
        "userName": "Maria Santos",
        "email": "maria@example.com",
        **extra,
    }
    if location_id is not None:
        context["activeLocation"] = location_id
    return context


def sso_payload(context: dict[str, Any] | None = None, key: str = SSO_KEY) -> str:
    return cryptojs_encrypt(json.dumps(context or user_context()).encode(), key)
