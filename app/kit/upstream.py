"""One request to an upstream API (GHL, Cast), timed: its latency and outcome (the HTTP status,
`timeout`, `connection_error`, or `cancelled`) go to the metrics' observer."""

import time
from typing import Any

import httpx

from app.metrics import RequestObserver


class Unanswered(Exception):
    """No HTTP answer at all: the request timed out or the connection failed."""

    def __init__(self, exc: httpx.TransportError) -> None:
        super().__init__(str(exc))
        self.timed_out = isinstance(exc, httpx.TimeoutException)
        self.kind = type(exc).__name__  # e.g. ConnectError


async def timed_request(
    http: httpx.AsyncClient,
    observe: RequestObserver,
    operation: str,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """`http.request(method, url, **kwargs)`, told to `observe` under `operation`; Unanswered
    when there is no answer (the client turns it into its own error)."""
    started = time.perf_counter()
    outcome = "cancelled"
    try:
        response = await http.request(method, url, **kwargs)
        outcome = str(response.status_code)
        return response
    except httpx.TransportError as exc:  # httpx.TimeoutException is one
        outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        raise Unanswered(exc) from exc
    finally:
        observe(operation, time.perf_counter() - started, outcome)
