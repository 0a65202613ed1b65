from typing import Literal

from pydantic import BaseModel, Field

HISTORY_LIMIT = 60


class Part(BaseModel):
    text: str
    cast_message_id: str | None = None
    cast_parts: int | None = None
    dlr: Literal["delivered", "failed"] | None = None
    dlr_status: str | None = None


class HistoryEvent(BaseModel):
    at: float
    event: str
    detail: str | None = None


class OutboundMessage(BaseModel):
    """One GHL message in the outbox: what to send, how far it got, and what happened."""

    message_id: str
    location_id: str
    contact_id: str | None = None
    phone: str
    to: str | None = None
    parts: list[Part]
    attachments: list[str] = Field(default_factory=list)
    stage: Literal["send", "poll", "report"] = "send"
    status: Literal["delivered", "failed"] | None = None
    error_code: str | None = None
    error_message: str | None = None
    received_at: float
    send_attempts: int = 0
    report_attempts: int = 0
    accepted_at: float | None = None
    polls: int = 0
    delivery: Literal["confirmed", "unconfirmed", "accepted"] | None = None
    finished_at: float | None = None
    token_refreshed: bool = False
    reported: bool = False
    # A test SMS queued from the settings page: there is no GHL message to report a status to.
    synthetic: bool = False
    history: list[HistoryEvent] = Field(default_factory=list)

    def record(self, at: float, event: str, detail: str | None = None) -> None:
        self.history.append(HistoryEvent(at=at, event=event, detail=detail))
        del self.history[:-HISTORY_LIMIT]

    def finish(
        self,
        at: float,
        status: Literal["delivered", "failed"],
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        self.status, self.error_code, self.error_message = status, code, message
        self.stage, self.finished_at = "report", at
        self.record(at, status, message)

    @property
    def parts_sent(self) -> int:
        return sum(1 for part in self.parts if part.cast_message_id)
