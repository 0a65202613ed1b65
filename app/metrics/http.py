"""HTTP metrics of every route (prometheus-fastapi-instrumentator), in the app's own registry.

Two metrics only, requests by status and a latency histogram (the instrumentator's default set
adds request/response sizes and a second histogram: more series and ~10 µs more per request).
The `handler` label is the route template (`/api/admin/messages/{message_id}`), never the raw
path; requests no route matched are grouped as `none`."""

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics

from app.metrics import NAMESPACE

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def instrument_http(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    Instrumentator(
        registry=registry, should_group_untemplated=True, excluded_handlers=["^/metrics$"]
    ).add(
        metrics.requests(metric_namespace=NAMESPACE, registry=registry),
        metrics.latency(
            metric_namespace=NAMESPACE,
            registry=registry,
            should_include_status=False,
            buckets=LATENCY_BUCKETS,
        ),
    ).instrument(app, metric_namespace=NAMESPACE)
    return registry
