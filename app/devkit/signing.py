"""Test signing keys standing in for GHL's, and a signer that produces GHL's headers."""

import base64
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa


@dataclass(frozen=True)
class TestKeys:
    __test__ = False  # not a pytest class
    ed25519_private: ed25519.Ed25519PrivateKey
    rsa_private: rsa.RSAPrivateKey

    @property
    def public_pems(self) -> str:
        """Both public keys, as GHL_WEBHOOK_PUBLIC_KEY would hold them."""
        return _pem(self.ed25519_private.public_key()) + _pem(self.rsa_private.public_key())

    def ed25519_headers(self, body: bytes) -> dict[str, str]:
        signature = self.ed25519_private.sign(body)
        return {"X-GHL-Signature": base64.b64encode(signature).decode()}

    def rsa_headers(self, body: bytes) -> dict[str, str]:
        signature = self.rsa_private.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return {"X-WH-Signature": base64.b64encode(signature).decode()}


def _pem(key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@cache
def test_keys() -> TestKeys:
    return TestKeys(
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


test_keys.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
