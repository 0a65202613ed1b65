"""Verify GHL webhook signatures on the raw request bytes.

`X-GHL-Signature`: base64 Ed25519 signature (current). `X-WH-Signature`: base64 RSA PKCS#1 v1.5
SHA-256 signature (legacy). The algorithm follows from the header name, the decoded length is a
cross-check, and any of the configured keys of that type may verify it (key rotation).
"""

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

# GHL's published keys (GHL docs: Webhook Integration Guide; docs/oauth/WebhookAuthentication.md).
GHL_ED25519_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----"""

GHL_RSA_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----"""

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"
_ED25519_SIGNATURE_BYTES = 64
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----(.+?)-----END PUBLIC KEY-----", re.DOTALL)


class SignatureError(Exception):
    """Why a webhook was refused (never includes key material)."""


@dataclass(frozen=True)
class WebhookKeys:
    ed25519: tuple[Ed25519PublicKey, ...]
    rsa: tuple[RSAPublicKey, ...]


def _ed25519_verifies(key: Ed25519PublicKey, signature: bytes, raw_body: bytes) -> bool:
    try:
        key.verify(signature, raw_body)
    except InvalidSignature:
        return False
    return True


def _pem_bodies(text: str) -> list[str]:
    """PEM blocks from env text: real or escaped newlines, wrapping quotes, or a bare body."""
    cleaned = text.strip().strip("'\"").replace("\\n", "\n")
    blocks = _PEM_BLOCK.findall(cleaned)
    if not blocks and cleaned:
        blocks = [cleaned]
    return ["".join(block.split()) for block in blocks]


def load_webhook_keys(configured: str | None) -> WebhookKeys:
    """The configured PEM keys (one or more, either type), else GHL's published defaults."""
    source = configured if configured and configured.strip() else None
    bodies = (
        _pem_bodies(source)
        if source
        else _pem_bodies(GHL_ED25519_PUBLIC_KEY) + _pem_bodies(GHL_RSA_PUBLIC_KEY)
    )
    ed25519: list[Ed25519PublicKey] = []
    rsa: list[RSAPublicKey] = []
    for body in bodies:
        try:
            key = serialization.load_der_public_key(base64.b64decode(body))
        except (ValueError, binascii.Error) as exc:
            raise ValueError(
                "GHL_WEBHOOK_PUBLIC_KEY holds a key that is not a PEM public key"
            ) from exc
        if isinstance(key, Ed25519PublicKey):
            ed25519.append(key)
        elif isinstance(key, RSAPublicKey):
            rsa.append(key)
        else:
            raise ValueError("GHL_WEBHOOK_PUBLIC_KEY keys must be Ed25519 or RSA")
    return WebhookKeys(tuple(ed25519), tuple(rsa))


def _decode(signature: str) -> bytes:
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("signature is not valid base64") from exc


def _present(value: str | None) -> str | None:
    if value is None or not value.strip() or value.strip().upper() == "N/A":
        return None
    return value


def verify_webhook(
    raw_body: bytes, ed25519_sig: str | None, rsa_sig: str | None, keys: WebhookKeys
) -> str:
    """Return the scheme that verified `raw_body`, or raise SignatureError."""
    ed25519_sig, rsa_sig = _present(ed25519_sig), _present(rsa_sig)
    if ed25519_sig is None and rsa_sig is None:
        raise SignatureError("missing signature header (X-GHL-Signature or X-WH-Signature)")
    if ed25519_sig is not None:
        signature = _decode(ed25519_sig)
        if len(signature) == _ED25519_SIGNATURE_BYTES and any(
            _ed25519_verifies(key, signature, raw_body) for key in keys.ed25519
        ):
            return "ed25519"
    if rsa_sig is not None:
        signature = _decode(rsa_sig)
        for key in keys.rsa:
            if len(signature) != key.key_size // 8:
                continue
            try:
                key.verify(signature, raw_body, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                continue
            return "rsa"
    raise SignatureError("signature does not match the body")
