"""Thin Cast.ph API client. Retrying is the caller's job: this reports what happened."""

import logging
import re

import httpx
from pydantic import BaseModel, ValidationError

from app.cast.schemas import (
    Channel,
    ErrorBody,
    Profile,
    SenderId,
    SenderIdList,
    SendRequest,
    SendResult,
    SmsLogs,
    StatusResult,
    Unsubscribed,
    UnsubscribedList,
    Usage,
)
from app.kit.retry import retry_after_seconds
from app.kit.upstream import Unanswered, timed_request
from app.kit.urls import path_segment
from app.metrics import RequestObserver

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
OPERATOR_STATUSES = {401, 402, 403}
# How Cast refuses a send to a number that used its unsubscribe link is not documented
# (cast-api.md §5.9): recognise the plausible codes, or a refusal whose words say so.
UNSUBSCRIBED_CODES = {
    "ALREADY_UNSUBSCRIBED",
    "UNSUBSCRIBED",
    "RECIPIENT_UNSUBSCRIBED",
    "NUMBER_UNSUBSCRIBED",
    "OPTED_OUT",
    "RECIPIENT_OPTED_OUT",
}
_UNSUBSCRIBED_WORDS = re.compile(r"unsubscrib|opted[ _-]?out|opt[ _-]out", re.IGNORECASE)

# Cast error codes a GHL user can act on, in their words (shown as the failure reason in GHL).
USER_REASONS = {
    "CHANNEL_NOT_ALLOWED": (
        "This Cast account cannot send through the SIM gateway; ask Cast to enable it"
    ),
    "INSUFFICIENT_CREDITS": "The Cast account is out of credits — top it up, then resend",
    "CREDIT_LIMIT_REACHED": (
        "The Cast account reached its postpaid credit limit — settle it with Cast, then resend"
    ),
    "INVALID_API_KEY": (
        "Cast does not accept this API key — enter a valid key on the Cast SMS settings page"
    ),
    "API_KEY_REVOKED": (
        "The Cast API key was revoked — create a new key in Cast and enter it on the Cast SMS "
        "settings page"
    ),
    "API_KEY_EXPIRED": (
        "The Cast API key has expired — create a new key in Cast and enter it on the Cast SMS "
        "settings page"
    ),
    "USER_INACTIVE": "The Cast account is disabled — ask Cast to re-activate it",
    "IP_NOT_WHITELISTED": (
        "Cast refuses this server's IP address for the key — add the bridge's IP address to the "
        "key's allow-list in Cast"
    ),
}
# Refusals that say the key or its account cannot send at all (not this message): every send
# with the key fails the same way until someone acts, so they fail fast and mark the key broken.
KEY_STATE_CODES = frozenset(USER_REASONS) - {"CHANNEL_NOT_ALLOWED"}


class CastError(Exception):
    """A send Cast did not accept. `retryable` says whether the same request may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: str | None = None,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def operator_problem(self) -> bool:
        return self.status in OPERATOR_STATUSES

    @property
    def recipient_unsubscribed(self) -> bool:
        """Cast refused because the recipient opted out (of this sender ID)."""
        if self.status is None or self.retryable or self.status in (401, 402):
            return False
        return self.code in UNSUBSCRIBED_CODES or bool(_UNSUBSCRIBED_WORDS.search(self.message))

    @property
    def key_state(self) -> bool:
        """Cast refused the key or its account (credits, key, account, IP), not the message."""
        return self.code in KEY_STATE_CODES

    @property
    def reason(self) -> str:
        """What to tell a GHL user: Cast's error in their words where we know it."""
        return USER_REASONS.get(self.code or "", self.message)


def _error_from(response: httpx.Response) -> CastError:
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        body = ErrorBody(error=response.text[:200] or None)
    code = body.error_code or f"HTTP_{response.status_code}"
    message = body.error or response.reason_phrase or "error"
    return CastError(
        f"Cast refused the SMS ({response.status_code} {code}): {message}",
        status=response.status_code,
        code=code,
        retryable=response.status_code in RETRYABLE_STATUSES,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


class CastClient:
    def __init__(self, http: httpx.AsyncClient, observer: RequestObserver) -> None:
        self._http = http
        self._observe = observer  # latency and status of every request (metrics)

    async def _request(
        self, method: str, url: str, operation: str, **kwargs: object
    ) -> httpx.Response:
        try:
            return await timed_request(self._http, self._observe, operation, method, url, **kwargs)
        except Unanswered as exc:
            reason = (
                "Cast did not answer in time"
                if exc.timed_out
                else f"could not reach Cast ({exc.kind})"
            )
            raise CastError(reason, status=None, retryable=True) from exc

    async def _get[M: BaseModel](
        self, api_key: str, path: str, operation: str, model: type[M], what: str
    ) -> M:
        response = await self._request(
            "GET", f"/api/v1/{path}", operation, headers={"X-API-Key": api_key}
        )
        if response.status_code >= 400:
            raise _error_from(response)
        return _read(response, model, what)

    async def account_balance(self, api_key: str) -> int:
        """`GET /api/v1/account/balance`: the account's credits (a cheap check of the key)."""
        response = await self._request(
            "GET", "/api/v1/account/balance", "balance", headers={"X-API-Key": api_key}
        )
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            return int(response.json()["credits"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CastError(
                "Cast answered with an unreadable balance",
                status=response.status_code,
                retryable=True,
            ) from exc

    async def unsubscribed(self, api_key: str) -> list[Unsubscribed]:
        """`GET /api/v1/account/unsubscribed`: numbers that opted out of the key's sender IDs."""
        response = await self._request(
            "GET", "/api/v1/account/unsubscribed", "unsubscribed", headers={"X-API-Key": api_key}
        )
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            return UnsubscribedList.model_validate_json(response.content).data
        except ValidationError as exc:
            raise CastError(
                "Cast answered with an unreadable unsubscribe list",
                status=response.status_code,
                retryable=True,
            ) from exc

    async def profile(self, api_key: str) -> Profile:
        """`GET /api/v1/account/profile`: billing type, allowed channels, active."""
        return await self._get(api_key, "account/profile", "profile", Profile, "profile")

    async def usage(self, api_key: str, since: str, until: str) -> Usage:
        """`GET /api/v1/account/usage?from=&to=` (dates YYYY-MM-DD): sent, failed, parts."""
        return await self._get(
            api_key, f"account/usage?from={since}&to={until}", "usage", Usage, "usage"
        )

    async def sender_ids(self, api_key: str) -> list[SenderId]:
        """`GET /api/v1/account/sender-ids`: the account's approved sender IDs and their channel."""
        found = await self._get(api_key, "account/sender-ids", "sender_ids", SenderIdList, "list")
        return found.sender_ids

    async def message_status(
        self, api_key: str, message_id: str, channel: Channel = "sms"
    ) -> StatusResult:
        """The delivery state of a message sent through `channel` (no push receipts at Cast)."""
        return await self._get(
            api_key,
            f"{channel}/status/{path_segment(message_id)}",
            _operation("status", channel),
            StatusResult,
            "status",
        )

    async def sms_logs(self, api_key: str, *, limit: int, offset: int = 0) -> SmsLogs:
        """`GET /api/v1/sms/logs`: a page of the key's messages, newest first, with their
        receipts (`limit` at most 500); messages of the SIM gateway are not in it."""
        return await self._get(
            api_key, f"sms/logs?limit={limit}&offset={offset}", "sms_logs", SmsLogs, "log"
        )

    async def send_sms(
        self,
        api_key: str,
        request: SendRequest,
        *,
        idempotency_key: str,
        channel: Channel = "sms",
    ) -> SendResult:
        """One send through the endpoint of `channel` (`/sms/send` or `/sim/send`)."""
        headers = {"X-API-Key": api_key, "X-Idempotency-Key": idempotency_key}
        response = await self._request(
            "POST",
            f"/api/v1/{channel}/send",
            _operation("send", channel),
            json=request.model_dump(exclude_none=True),
            headers=headers,
        )
        if response.status_code >= 400:
            raise _error_from(response)
        result = _read(response, SendResult, "body")
        if not result.success:
            raise _error_from(response)
        if not result.message_id:
            raise CastError(
                "Cast accepted the SMS without a message id (scheduled sends are not used)",
                status=response.status_code,
                retryable=False,
            )
        result.replayed = response.headers.get("x-idempotent-replay", "").lower() == "true"
        return result


def _operation(name: str, channel: Channel) -> str:
    """The metrics operation: `send`/`status` on the SMS channel, `sim_send`/`sim_status`."""
    return name if channel == "sms" else f"{channel}_{name}"


def _read[M: BaseModel](response: httpx.Response, model: type[M], what: str) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise CastError(
            f"Cast answered with an unreadable {what}",
            status=response.status_code,
            retryable=True,
        ) from exc
