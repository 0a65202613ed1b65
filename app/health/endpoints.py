import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServicesDep
from app.store import StoreUnavailable

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 1.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. No I/O."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: start-up finished and the store answers within a second."""
    if not services.readiness.started:
        return JSONResponse({"status": "starting", "failing": "startup"}, status_code=503)
    try:
        await asyncio.wait_for(services.store.ping(), READY_TIMEOUT_SECONDS)
    except (TimeoutError, StoreUnavailable) as exc:
        # The error text (a host name, a path, a driver message) goes to the log, not to whoever
        # asks: /readyz is often reachable from outside through the proxy's health check.
        log.warning("not ready: the store does not answer", extra={"reason": str(exc) or "timeout"})
        return JSONResponse({"status": "unavailable", "failing": "store"}, status_code=503)
    return JSONResponse({"status": "ok", "store": services.store.backend})
