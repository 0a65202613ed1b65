"""GHL custom-page SSO and the page's short-lived signed sessions.

GHL hands the embedded page an encrypted user context (`REQUEST_USER_DATA_RESPONSE`). It is
CryptoJS AES in passphrase mode with the app's Shared Secret (`GHL_APP_SSO_KEY`):
base64("Salted__" + 8-byte salt + ciphertext); key and IV come from OpenSSL's EVP_BytesToKey
(MD5, one iteration) over (secret, salt); AES-256-CBC with PKCS#7 padding.

Every way a payload can be wrong (not base64, no salt header, bad padding, not JSON, no user)
raises the same `SsoError` with the same message, so the answers give no padding oracle.

After the handshake the page carries a session token in its forms (not a cookie: the page lives
in a third-party iframe where cookies are unreliable, and a token in the form doubles as the
CSRF token). It is base64url(JSON) + "." + HMAC-SHA256, with a key derived from the SSO key.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.kit.signed import SignedTokens

SALT_HEADER = b"Salted__"
MAX_PAYLOAD_CHARS = 16_384


class SsoError(Exception):
    """The payload or the session cannot be trusted."""


class SsoUser(BaseModel):
    """GHL's decrypted user context. Only `activeLocation` says which location the page is in."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)

    user_id: str = Field(alias="userId", min_length=1)
    company_id: str | None = Field(None, alias="companyId")
    role: str | None = None
    type: str | None = None
    user_name: str | None = Field(None, alias="userName")
    email: str | None = None
    active_location: str | None = Field(None, alias="activeLocation")


def evp_bytes_to_key(secret: bytes, salt: bytes, size: int = 48) -> bytes:
    """OpenSSL's EVP_BytesToKey with MD5 and one iteration (what CryptoJS uses)."""
    derived, block = b"", b""
    while len(derived) < size:
        block = hashlib.md5(block + secret + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:size]


def cryptojs_decrypt(payload: str, secret: str) -> bytes:
    try:
        raw = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SsoError("invalid SSO payload") from exc
    if len(raw) < 32 or not raw.startswith(SALT_HEADER) or (len(raw) - 16) % 16:
        raise SsoError("invalid SSO payload")
    salt, ciphertext = raw[8:16], raw[16:]
    derived = evp_bytes_to_key(secret.encode(), salt)
    decryptor = Cipher(algorithms.AES(derived[:32]), modes.CBC(derived[32:])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise SsoError("invalid SSO payload") from exc


def decrypt_user(payload: str, secret: str) -> SsoUser:
    if not payload or len(payload) > MAX_PAYLOAD_CHARS:
        raise SsoError("invalid SSO payload")
    plaintext = cryptojs_decrypt(payload, secret)
    try:
        return SsoUser.model_validate(json.loads(plaintext))
    except (UnicodeDecodeError, ValueError, ValidationError) as exc:
        raise SsoError("invalid SSO payload") from exc


# Sessions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Session:
    location_id: str
    user_id: str
    user_name: str
    expires_at: float
    company_id: str  # the user's agency, checked against the installation's on every action
    admin: bool  # GHL role "admin": may change the key and sender ID and send test SMS


class SessionSigner(SignedTokens):
    def __init__(self, sso_key: str, ttl_seconds: float) -> None:
        # A key of its own, so a session token never reveals anything about the SSO key.
        super().__init__(sso_key, b"settings-page-session/v1")
        self.ttl_seconds = ttl_seconds

    def issue(self, session: Session) -> str:
        return self._sign(
            {
                "loc": session.location_id,
                "uid": session.user_id,
                "name": session.user_name,
                "cid": session.company_id,
                "adm": session.admin,
                "exp": round(session.expires_at, 3),
            }
        )

    def verify(self, token: str, now: float) -> Session:
        try:
            claims = self._open(token or "")
            session = Session(
                str(claims["loc"]),
                str(claims["uid"]),
                str(claims["name"]),
                float(claims["exp"]),
                str(claims["cid"]),
                claims["adm"] is True,
            )
        except (ValueError, KeyError, TypeError) as exc:  # BadToken is a ValueError
            raise SsoError("invalid session") from exc
        if session.expires_at <= now:
            raise SsoError("session expired")
        return session
