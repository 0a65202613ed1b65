"""The services the lifespan built (app/composition.py), handed to endpoints through Depends:
one typed dependency per thing an endpoint uses."""

from typing import Annotated

from fastapi import Depends, Request

from app.admin.service import AdminService
from app.composition import Readiness, Services
from app.config import Settings
from app.ghl.signature import WebhookKeys
from app.inbound.service import InboundService
from app.locations.service import LocationService
from app.metrics import Counters
from app.metrics.service import MetricsService
from app.oauth.service import OAuthService
from app.outbound.service import OutboundService
from app.store import Store

SERVICES_STATE = "services"  # the lifespan state's key


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop per request that cost the webhook path a third of its throughput.
async def get_services(request: Request) -> Services:
    return getattr(request.state, SERVICES_STATE)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_store(services: ServicesDep) -> Store:
    return services.store


StoreDep = Annotated[Store, Depends(get_store)]


async def get_readiness(services: ServicesDep) -> Readiness:
    return services.readiness


ReadinessDep = Annotated[Readiness, Depends(get_readiness)]


async def get_counters(services: ServicesDep) -> Counters:
    return services.counters


CountersDep = Annotated[Counters, Depends(get_counters)]


async def get_webhook_keys(services: ServicesDep) -> WebhookKeys:
    return services.webhook_keys


WebhookKeysDep = Annotated[WebhookKeys, Depends(get_webhook_keys)]


async def get_outbound_service(services: ServicesDep) -> OutboundService:
    return services.outbound


OutboundServiceDep = Annotated[OutboundService, Depends(get_outbound_service)]


async def get_inbound_service(services: ServicesDep) -> InboundService:
    return services.inbound


InboundServiceDep = Annotated[InboundService, Depends(get_inbound_service)]


async def get_oauth_service(services: ServicesDep) -> OAuthService:
    return services.oauth


OAuthServiceDep = Annotated[OAuthService, Depends(get_oauth_service)]


async def get_location_service(services: ServicesDep) -> LocationService:
    return services.locations


LocationServiceDep = Annotated[LocationService, Depends(get_location_service)]


async def get_admin_service(services: ServicesDep) -> AdminService:
    return services.admin


AdminServiceDep = Annotated[AdminService, Depends(get_admin_service)]


async def get_metrics_service(services: ServicesDep) -> MetricsService:
    return services.metrics


MetricsServiceDep = Annotated[MetricsService, Depends(get_metrics_service)]
