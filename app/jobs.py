"""What every queued job (an outbound message, an inbound SMS, a DND update) keeps: a history of
what happened to it, and whether it has spent its one token refresh."""

from typing import ClassVar

from pydantic import BaseModel, Field

from app.kit.logs import mask_phones_in


class HistoryEvent(BaseModel):
    at: float
    event: str
    detail: str | None = None


class Job(BaseModel):
    history_limit: ClassVar[int] = 60  # the newest events kept

    # GHL answered 401 and the token was refreshed: a second 401 is not refreshed again.
    token_refreshed: bool = False
    history: list[HistoryEvent] = Field(default_factory=list)

    def record(self, at: float, event: str, detail: str | None = None) -> None:
        """Add an event (phone numbers in `detail` masked, as in the logs)."""
        self.history.append(HistoryEvent(at=at, event=event, detail=mask_phones_in(detail)))
        del self.history[: -self.history_limit]

    def spend_token_refresh(self, at: float) -> bool:
        """GHL answered 401: True (and recorded) unless this job already refreshed its token."""
        if self.token_refreshed:
            return False
        self.token_refreshed = True
        self.record(at, "token_refresh", "GHL answered 401")
        return True
