"""`GET /metrics` (Prometheus text format), behind METRICS_BEARER_TOKEN when it is set."""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.deps import ServicesDep
from app.kit.bearer import require_bearer

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_bearer_token
    if token is not None:
        require_bearer(request, token, "invalid_metrics_token", "metrics")
    return Response(await services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
