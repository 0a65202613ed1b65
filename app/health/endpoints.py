import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ResourcesDep
from app.store import StoreUnavailable

router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 1.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. No I/O."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(resources: ResourcesDep) -> JSONResponse:
    """Readiness: start-up finished and the store answers within a second."""
    if not resources.started:
        return JSONResponse({"status": "starting", "failing": "startup"}, status_code=503)
    try:
        await asyncio.wait_for(resources.store.ping(), READY_TIMEOUT_SECONDS)
    except (TimeoutError, StoreUnavailable) as exc:
        detail = str(exc) or "no answer within 1 s"
        return JSONResponse(
            {"status": "unavailable", "failing": "store", "detail": detail}, status_code=503
        )
    return JSONResponse({"status": "ok", "store": resources.store.backend})
