"""Which GHL location gets an inbound SMS. Never a guess: replies follow `to`. The location the
operator routes `to` to, or the one location owning the sender ID `to` names, gets it whoever
else texted the customer; recency (the one location that texted the number lately) decides only
among the locations sharing that sender, among those that may have sent with it, or when `to` is
absent. Else nobody: the message is kept as unroutable."""

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
        owners: Callable[[str], Awaitable[list[str]]],
    ) -> None:
        self._recipients = recipients
        self._owners = owners  # the locations owning a sender ID (app/locations/owners.py)
        self.window_seconds = routing_window(settings)
        self._routes = {sender_key(key): loc for key, loc in settings.inbound_routes.items()}

    def addressed(self, sender: RecentSender, to_key: str) -> bool | None:
        """Whether a reply sent to `to_key` (a `sender_key`) answers `sender`'s SMS: `to` is the
        sender ID or number that SMS went out with. None when it cannot be told: the SMS went
        out with the Cast account's default sender ID, which the bridge does not know."""
        if sender.sender is None:
            return None
        return sender_key(sender.sender) == to_key

    async def route(self, phone_e164: str, to: str | None, received: float) -> Route | NoRoute:
        """1. the location INBOUND_ROUTES maps `to` to; 2. the one location owning `to`;
        3. among several owners, the only one that texted this number within the window;
        4. with no owner, the only location that texted it from `to` (or from a sender it
        cannot tell), or with no `to`, the only one that texted it; 5. else NoRoute."""
        recent = await self._recipients.senders(phone_e164, since=received - self.window_seconds)
        if to is None:
            return self._only(recent, "no 'to' was given")
        to_key = sender_key(to)
        if location_id := self._routes.get(to_key):
            return Route(location_id, "route")
        owners = await self._owners(to)
        if len(owners) == 1:
            return Route(owners[0], "sender_id")
        if owners:
            sharing = [sender for sender in recent if sender.location_id in owners]
            if len(sharing) == 1:
                return Route(sharing[0].location_id, "recent_outbound")
            return NoRoute(self._shared(to, owners, sharing))
        maybe = [sender for sender in recent if self.addressed(sender, to_key) is not False]
        if len(maybe) > 1 and (chosen := self._single_out(maybe, to_key)) is not None:
            return Route(chosen, "recent_outbound")
        return self._only(maybe, f"no location owns {to!r} and no INBOUND_ROUTES entry maps it")

    def _only(self, recent: list[RecentSender], why_not: str) -> Route | NoRoute:
        if len(recent) == 1:
            return Route(recent[0].location_id, "recent_outbound")
        if recent:
            return NoRoute(self._ambiguous(recent, why_not))
        return NoRoute(
            f"no location sent an SMS to this number in the last {self._days} days and {why_not}"
        )

    def _single_out(self, recent: list[RecentSender], to_key: str) -> str | None:
        verdicts = [(sender.location_id, self.addressed(sender, to_key)) for sender in recent]
        chosen = [location_id for location_id, verdict in verdicts if verdict]
        unknown = any(verdict is None for _, verdict in verdicts)
        return chosen[0] if len(chosen) == 1 and not unknown else None

    def _ambiguous(self, recent: list[RecentSender], why_not: str) -> str:
        return (
            f"{len(recent)} locations sent an SMS to this number in the last {self._days} days "
            f"({_named([sender.location_id for sender in recent])}), {why_not}, and none can be "
            "told apart: give each sub-account its own sender ID"
        )

    def _shared(self, to: str, owners: list[str], sharing: list[RecentSender]) -> str:
        texted = (
            f"{len(sharing)} of them ({_named([s.location_id for s in sharing])}) texted"
            if sharing
            else "none of them texted"
        )
        return (
            f"{to!r} is shared by {len(owners)} locations ({_named(owners)}) and {texted} this "
            f"number in the last {self._days} days"
        )

    @property
    def _days(self) -> str:
        return f"{self.window_seconds / SECONDS_PER_DAY:g}"


def _named(location_ids: list[str]) -> str:
    names = ", ".join(location_ids[:NAMED_IN_REASON])
    more = len(location_ids) - NAMED_IN_REASON
    return f"{names} and {more} more" if more > 0 else names
