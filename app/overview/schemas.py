"""The agency overview: one row per sub-account (never a token or a key)."""

from pydantic import BaseModel

from app.outbound.schemas import OutboundMessage


class Window(BaseModel):
    """A sub-account's outbound messages received in a window (24 h or 7 d)."""

    sent: int  # every message GHL handed over
    delivered: int
    failed: int
    pending: int
    delivery_rate: float | None  # delivered / (delivered + failed); None before any outcome
    capped: bool  # more messages than were counted (the counts are lower bounds)

    @classmethod
    def of(cls, messages: list[OutboundMessage], since: float, capped: bool) -> "Window":
        inside = [m for m in messages if m.received_at >= since]
        delivered = sum(1 for m in inside if m.status == "delivered")
        failed = sum(1 for m in inside if m.status == "failed")
        done = delivered + failed
        return cls(
            sent=len(inside),
            delivered=delivered,
            failed=failed,
            pending=len(inside) - done,
            delivery_rate=round(delivered / done, 4) if done else None,
            capped=capped,
        )


class LocationOverview(BaseModel):
    location_id: str
    name: str | None  # as GHL names the sub-account (None: GHL was not asked or cannot say)
    company_id: str | None
    installed: bool  # its own installation, or its agency's
    via_agency: bool  # served through the agency's installation
    needs_reinstall: bool
    reinstall_reason: str | None
    sender_id: str | None  # what its next SMS is sent with (None: Cast's default)
    channel: str  # sms or sim
    own_key: bool  # its own Cast API key (else the app's default account)
    last_24h: Window
    last_7d: Window
    opted_out: int
    credits: int | None  # only with its own key; None: Cast could not say
    low_credit_threshold: int | None  # only with its own key


class LocationsOverview(BaseModel):
    locations: list[LocationOverview]
    problems: list[str]  # what could not be read (GHL's names of an agency's sub-accounts)
