"""The OAuth `state` parameter: signed (HMAC-SHA256), expiring, with a random nonce.

`state` = base64url(JSON {"n": nonce, "exp": unix seconds}) "." base64url(HMAC-SHA256). The key
is derived from the app's client secret, so no extra secret has to be configured and a state made
for another app (or by anyone without the secret) is refused.
"""

import secrets
import time

from app.kit.signed import BadToken, ForgedToken, SignedTokens

_KEY_LABEL = b"cast-ghl-provider oauth state v1"


class StateError(Exception):
    """The state is malformed, was not signed by us, or has expired."""


class StateSigner(SignedTokens):
    def __init__(self, secret: str, ttl_seconds: float) -> None:
        super().__init__(secret, _KEY_LABEL)
        self._ttl = ttl_seconds

    def issue(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return self._sign({"n": secrets.token_urlsafe(12), "exp": int(now + self._ttl)})

    def verify(self, state: str, now: float | None = None) -> None:
        """Raise StateError unless `state` was issued by this signer and has not expired."""
        now = time.time() if now is None else now
        try:
            expires = self._open(state)["exp"]
        except ForgedToken as exc:
            raise StateError("state signature does not match (tampered or not ours)") from exc
        except (BadToken, KeyError, TypeError) as exc:
            raise StateError("state is malformed") from exc
        if not isinstance(expires, int) or now > expires:
            raise StateError("state has expired: start the installation again")
