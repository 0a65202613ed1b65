"""Dependencies shared by every endpoint that receives a signed GHL webhook."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from app.deps import ServicesDep
from app.ghl.signature import (
    ED25519_HEADER,
    RSA_HEADER,
    SignatureError,
    WebhookKeys,
    verify_webhook,
)
from app.kit.errors import ApiError, validation_error
from app.metrics import Counters

log = logging.getLogger(__name__)


def check_signature(
    raw: bytes,
    ed25519_sig: str | None,
    rsa_sig: str | None,
    keys: WebhookKeys,
    counters: Counters,
) -> None:
    """401 (counted) unless one of the signature headers verifies `raw`."""
    try:
        verify_webhook(raw, ed25519_sig, rsa_sig, keys)
    except SignatureError as exc:
        counters.inc("webhooks_rejected_signature")
        raise ApiError(401, "invalid_signature", str(exc)) from exc


async def verified_body(request: Request, services: ServicesDep) -> bytes:
    """The raw body, once its signature is verified. Nothing is parsed before that."""
    raw = await request.body()
    check_signature(
        raw,
        request.headers.get(ED25519_HEADER),
        request.headers.get(RSA_HEADER),
        services.webhook_keys,
        services.counters,
    )
    return raw


VerifiedBody = Annotated[bytes, Depends(verified_body)]


def parse_payload[M: BaseModel](model: type[M], raw: bytes) -> M:
    """400 for bytes that are not a JSON object, 422 naming the first bad or missing field."""
    if not raw.strip().startswith(b"{"):
        raise ApiError(400, "malformed_json", "body must be a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise ApiError(400, "malformed_json", "body is not valid JSON") from exc
        raise validation_error(exc) from exc


@contextmanager
def refusals_counted(counters: Counters, counter: str) -> Iterator[None]:
    """Count an ApiError raised in the block (a refused payload) under `counter`; it goes on."""
    try:
        yield
    except ApiError:
        counters.inc(counter)
        raise
