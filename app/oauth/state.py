"""The OAuth `state` parameter: signed (HMAC-SHA256), expiring, with a random nonce.

`state` = base64url(JSON {"n": nonce, "exp": unix seconds}) "." base64url(HMAC-SHA256). The key
is derived from the app's client secret, so no extra secret has to be configured and a state made
for another app (or by anyone without the secret) is refused.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time

_KEY_LABEL = b"cast-ghl-provider oauth state v1"


class StateError(Exception):
    """The state is malformed, was not signed by us, or has expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StateSigner:
    def __init__(self, secret: str, ttl_seconds: float) -> None:
        self._key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self._ttl = ttl_seconds

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        body = json.dumps(
            {"n": secrets.token_urlsafe(12), "exp": int(now + self._ttl)}, separators=(",", ":")
        )
        payload = _b64(body.encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, state: str, now: float | None = None) -> None:
        """Raise StateError unless `state` was issued by this signer and has not expired."""
        now = time.time() if now is None else now
        payload, dot, mac = state.partition(".")
        if not dot or not payload or not mac or not state.isascii():  # we issue base64url only
            raise StateError("state is malformed")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise StateError("state signature does not match (tampered or not ours)")
        try:
            expires = json.loads(_unb64(payload))["exp"]
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise StateError("state is malformed") from exc
        if not isinstance(expires, int) or now > expires:
            raise StateError("state has expired: start the installation again")
