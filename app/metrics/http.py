"""HTTP metrics of every route, in the app's own registry: a pure-ASGI middleware.

Two metrics, named and labelled as prometheus-fastapi-instrumentator named them (which this
replaces: it cost ~30 µs per request, building a Request, a Response and matching every route
again): requests by status class and a latency histogram. The `handler` label is the route
template (`/api/admin/messages/{message_id}`) of the route the router picked, never the raw
path; requests no route matched are grouped as `none`; `/metrics` itself is not counted. The
labelled series are looked up once and kept, so a request costs two dictionary look-ups and
two updates."""

import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import NAMESPACE

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
NOT_COUNTED = frozenset({"/metrics"})
UNMATCHED = "none"


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ("handler", "method", "status"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self._latency = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests in seconds",
            ("handler", "method"),
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        key = (handler, method, status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self._requests.labels(handler, method, f"{status // 100}xx"),
                self._latency.labels(handler, method),
            )
        series[0].inc()
        series[1].observe(seconds)


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers before failing

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            handler = getattr(scope.get("route"), "path", None) or UNMATCHED
            if handler not in NOT_COUNTED:
                self._metrics.observe(
                    handler, scope["method"], status, time.perf_counter() - started
                )


def instrument_http(app: FastAPI) -> HttpMetrics:
    """Add the middleware to `app`; the metrics it counts in (and their registry)."""
    metrics = HttpMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    return metrics
