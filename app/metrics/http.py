"""HTTP metrics of every route (prometheus-fastapi-instrumentator), in the app's own registry.

The `handler` label is the route template (`/api/admin/messages/{message_id}`), never the raw
path; requests no route matched are grouped as `none`."""

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator

from app.metrics import NAMESPACE


def instrument_http(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    Instrumentator(
        registry=registry,
        should_group_untemplated=True,
        excluded_handlers=["^/metrics$"],
    ).instrument(app, metric_namespace=NAMESPACE)
    return registry
