"""Resources opened in the lifespan, handed to endpoints through Depends."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.admin.service import AdminService
from app.config import Settings
from app.ghl.signature import WebhookKeys
from app.inbound.service import InboundService
from app.locations.service import LocationService
from app.metrics import Counters
from app.metrics.service import MetricsService
from app.oauth.repository import InstallationRepository
from app.oauth.service import OAuthService
from app.oauth.tokens import TokenService
from app.optouts.service import OptOutService
from app.outbound.service import OutboundService
from app.store import Store


@dataclass
class Resources:
    settings: Settings
    store: Store
    webhook_keys: WebhookKeys
    counters: Counters
    installations: InstallationRepository
    tokens: TokenService
    outbound: OutboundService
    inbound: InboundService
    oauth: OAuthService
    started: bool = False
    locations: LocationService | None = None  # the settings page
    admin: AdminService | None = None  # the admin API (operators)
    metrics: MetricsService | None = None  # GET /metrics
    optouts: OptOutService | None = None  # the suppression list


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop per request that cost the webhook path a third of its throughput.
async def get_resources(request: Request) -> Resources:
    return request.state.resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_outbound_service(resources: ResourcesDep) -> OutboundService:
    return resources.outbound


OutboundServiceDep = Annotated[OutboundService, Depends(get_outbound_service)]


async def get_inbound_service(resources: ResourcesDep) -> InboundService:
    return resources.inbound


InboundServiceDep = Annotated[InboundService, Depends(get_inbound_service)]


async def get_oauth_service(resources: ResourcesDep) -> OAuthService:
    return resources.oauth


OAuthServiceDep = Annotated[OAuthService, Depends(get_oauth_service)]
