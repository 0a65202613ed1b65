"""Which GHL location gets an inbound SMS. Never a guess: a recent sender, a configured route,
or nobody (the message is kept as unroutable)."""

from dataclasses import dataclass

from app.config import Settings
from app.inbound.repository import RecipientDirectory
from app.inbound.schemas import RoutedBy
from app.phone import InvalidPhoneNumber, to_e164

SECONDS_PER_DAY = 86_400


def route_key(value: str) -> str:
    """A PH mobile number in any format -> E.164; anything else (a sender ID) -> upper case."""
    try:
        return to_e164(value)
    except InvalidPhoneNumber:
        return "".join(value.split()).upper()


@dataclass(frozen=True, slots=True)
class Route:
    location_id: str
    routed_by: RoutedBy


class InboundRouter:
    def __init__(self, settings: Settings, recipients: RecipientDirectory) -> None:
        self._recipients = recipients
        self.window_seconds = settings.inbound_routing_window_days * SECONDS_PER_DAY
        self._routes = {route_key(key): loc for key, loc in settings.inbound_routes.items()}

    async def route(self, phone_e164: str, to: str | None, received: float) -> Route | None:
        """1. the location that last sent an SMS to this number within the window;
        2. the location INBOUND_ROUTES maps the receiving number / sender ID to; 3. None."""
        last = await self._recipients.last_sender(phone_e164)
        if last is not None and received - last.at <= self.window_seconds:
            return Route(last.location_id, "recent_outbound")
        if to is not None and (location_id := self._routes.get(route_key(to))):
            return Route(location_id, "route")
        return None
