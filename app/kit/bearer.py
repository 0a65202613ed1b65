"""`Authorization: Bearer <secret>` checks (admin API, /metrics), compared in constant time."""

import hmac

from fastapi import Request
from pydantic import SecretStr

from app.kit.errors import ApiError


def require_bearer(request: Request, secret: SecretStr, code: str, what: str) -> None:
    """401 `code` unless the request carries `secret` as its bearer token."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        reason = "missing" if not given else "wrong"
        raise ApiError(401, code, f"{what}: the bearer token is {reason}")
