"""Signed tokens: base64url(JSON claims) "." base64url(HMAC-SHA256), with a key of their own.

The key is derived from a configured secret and a label naming the token's use (the OAuth
`state`, the settings page's session), so a token made for one use never verifies as another
and reveals nothing about the secret. Tokens are issued base64url only: anything else is refused
before any decoding.
"""

import base64
import hashlib
import hmac
import json
from typing import Any


class BadToken(ValueError):
    """The token is malformed (not two base64url parts, or claims that are not JSON)."""


class ForgedToken(BadToken):
    """The signature does not match: altered, or signed with another key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignedTokens:
    def __init__(self, secret: str, label: bytes) -> None:
        self._key = hmac.new(secret.encode(), label, hashlib.sha256).digest()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def _sign(self, claims: dict[str, Any]) -> str:
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def _open(self, token: str) -> Any:
        """The claims of a token signed with this key; BadToken (ForgedToken) otherwise."""
        body, _, mac = token.partition(".")
        if not body or not mac or not token.isascii():
            raise BadToken("not a signed token")
        if not hmac.compare_digest(mac, self._mac(body)):
            raise ForgedToken("the signature does not match")
        try:
            return json.loads(_unb64(body))
        except ValueError as exc:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
            raise BadToken("the claims are not JSON") from exc
