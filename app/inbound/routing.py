"""Which GHL location gets an inbound SMS. Never a guess: the one location that texted the number
recently (or the one the reply's `to` singles out among several), a configured route, or nobody
(the message is kept as unroutable)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.cast.senders import sender_key
from app.config import Settings
from app.inbound.repository import RecipientDirectory
from app.inbound.schemas import RecentSender, RoutedBy

SECONDS_PER_DAY = 86_400
NAMED_IN_REASON = 5  # candidate locations named in an unroutable reason


def routing_window(settings: Settings) -> float:
    """INBOUND_ROUTING_WINDOW_DAYS in seconds: how long a location's SMS routes replies to it."""
    return settings.inbound_routing_window_days * SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class Route:
    location_id: str
    routed_by: RoutedBy


@dataclass(frozen=True, slots=True)
class NoRoute:
    """Why no location could be chosen (shown to the operator with the unroutable message)."""

    reason: str


class InboundRouter:
    def __init__(
        self,
        settings: Settings,
        recipients: RecipientDirectory,
        senders: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self._recipients = recipients
        self._sender_owners = senders  # the locations sending as a sender ID (their own setting)
        self.window_seconds = routing_window(settings)
        self._routes = {sender_key(key): loc for key, loc in settings.inbound_routes.items()}

    def addressed(self, sender: RecentSender, to_key: str) -> bool | None:
        """Whether a reply sent to `to_key` (a `sender_key`) answers `sender`'s SMS: `to` is the
        sender ID or number that SMS went out with, or one INBOUND_ROUTES gives its location.
        None when it cannot be told: the SMS went out with the Cast account's default sender
        ID, which the bridge does not know."""
        if self._routes.get(to_key) == sender.location_id:
            return True
        if sender.sender is None:
            return None
        return sender_key(sender.sender) == to_key

    async def route(self, phone_e164: str, to: str | None, received: float) -> Route | NoRoute:
        """1. the only location that texted this number within the window;
        2. among several, the one `to` singles out (and none of the others might be it);
        3. with none, the location INBOUND_ROUTES maps `to` to; 4. else the one location whose
        own sender ID `to` is (a SIM number texted first by a customer); 5. else NoRoute."""
        recent = await self._recipients.senders(phone_e164, since=received - self.window_seconds)
        to_key = sender_key(to) if to is not None else None
        if len(recent) == 1:
            return Route(recent[0].location_id, "recent_outbound")
        if recent:
            chosen = self._single_out(recent, to_key) if to_key is not None else None
            if chosen is not None:
                return Route(chosen, "recent_outbound")
            return NoRoute(self._ambiguous(recent, to))
        if to_key is not None and (location_id := self._routes.get(to_key)):
            return Route(location_id, "route")
        if to is not None and self._sender_owners is not None:
            owners = await self._sender_owners(to)
            if len(owners) == 1:
                return Route(owners[0], "sender_id")
        return NoRoute(
            f"no location sent an SMS to this number in the last {self._days} days and "
            + (f"no INBOUND_ROUTES entry for {to!r}" if to else "no 'to' was given")
        )

    def _single_out(self, recent: list[RecentSender], to_key: str) -> str | None:
        verdicts = [(sender.location_id, self.addressed(sender, to_key)) for sender in recent]
        chosen = [location_id for location_id, verdict in verdicts if verdict]
        unknown = any(verdict is None for _, verdict in verdicts)
        return chosen[0] if len(chosen) == 1 and not unknown else None

    def _ambiguous(self, recent: list[RecentSender], to: str | None) -> str:
        names = ", ".join(sender.location_id for sender in recent[:NAMED_IN_REASON])
        more = f" and {len(recent) - NAMED_IN_REASON} more" if len(recent) > NAMED_IN_REASON else ""
        which = f"{to!r} does not single one out" if to else "no 'to' was given"
        return (
            f"{len(recent)} locations sent an SMS to this number in the last {self._days} days "
            f"({names}{more}) and {which}: give each sub-account its own sender ID"
        )

    @property
    def _days(self) -> str:
        return f"{self.window_seconds / SECONDS_PER_DAY:g}"
