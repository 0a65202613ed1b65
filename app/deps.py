"""The services the lifespan built (app/composition.py), handed to endpoints as one dependency:
`services: ServicesDep`, then `services.outbound`, `services.settings`, …"""

from typing import Annotated

from fastapi import Depends, Request

from app.composition import Services

SERVICES_STATE = "services"  # the lifespan state's key


# `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool.
async def get_services(request: Request) -> Services:
    return getattr(request.state, SERVICES_STATE)


ServicesDep = Annotated[Services, Depends(get_services)]
