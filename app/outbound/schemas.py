from typing import Literal

from pydantic import BaseModel, Field

from app.cast.schemas import Channel
from app.jobs import Job
from app.kit.logs import mask_phones_in


class Part(BaseModel):
    text: str
    cast_message_id: str | None = None
    cast_parts: int | None = None
    dlr: Literal["delivered", "failed"] | None = None
    dlr_status: str | None = None
    channel: Channel | None = None  # the Cast channel it was accepted on (its receipts are there)
    # Sent again after the carrier rejected it (an operator's re-queue): part of the Cast
    # idempotency key, so Cast does not replay the rejected send's answer.
    resends: int = 0

    def idempotency_key(self, message_id: str, index: int, total: int) -> str:
        key = f"ghl:{message_id}:{index}/{total}"
        return f"{key}:r{self.resends}" if self.resends else key


class OutboundMessage(Job):
    """One GHL message in the outbox: what to send, how far it got, and what happened."""

    message_id: str
    location_id: str
    contact_id: str | None = None
    phone: str
    to: str | None = None
    parts: list[Part]
    attachments: list[str] = Field(default_factory=list)
    # The route, fixed at the first send attempt so every part and every retry (same idempotency
    # key) goes the same way; a sender switched meanwhile applies to the next message.
    channel: Channel | None = None
    sender_id: str | None = None
    # The Cast key (account) of the route, encrypted with the token cipher: retries and receipt
    # polls use it even after the location's key changed or was removed, since Cast's
    # idempotency and message ids are per account. None: stored before it was kept (issue 28).
    cast_key: str | None = None
    stage: Literal["send", "poll", "report"] = "send"
    status: Literal["delivered", "failed"] | None = None
    error_code: str | None = None
    error_message: str | None = None
    received_at: float
    send_attempts: int = 0
    deferrals: int = 0  # times its key's backlog sent it back to the outbox (`ComeBack`)
    report_attempts: int = 0
    accepted_at: float | None = None
    polls: int = 0
    delivery: Literal["confirmed", "unconfirmed", "accepted"] | None = None
    finished_at: float | None = None
    reported: bool = False
    # A test SMS queued from the settings page: there is no GHL message to report a status to.
    synthetic: bool = False
    # Re-queued by an operator: the send deadline counts from `requeued_at`.
    requeues: int = 0
    requeued_at: float | None = None

    def finish(
        self,
        at: float,
        status: Literal["delivered", "failed"],
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        self.status, self.error_code = status, code
        self.error_message = mask_phones_in(message)
        self.stage, self.finished_at = "report", at
        self.record(at, status, message)

    def restart(self, at: float) -> None:
        """Re-queue a failed message: send what was not delivered, then report the new outcome.

        Parts Cast accepted keep their Cast message id and are not sent again (their receipts
        are polled again), except parts the carrier rejected: those are sent again under a new
        idempotency key. Parts Cast never accepted are sent with the same key as before, so if
        an earlier attempt did reach Cast unseen (a timeout), Cast replays it instead of sending
        a second SMS. While a part stays accepted the rest keep its route (key, sender and
        channel); otherwise the location's current ones are taken (a fix after
        CHANNEL_NOT_ALLOWED).
        """
        for part in self.parts:
            if part.dlr == "failed":
                part.cast_message_id = part.cast_parts = part.dlr = part.dlr_status = None
                part.channel = None
                part.resends += 1
        if not self.parts_sent:
            self.channel = self.sender_id = self.cast_key = None
        self.stage, self.status, self.error_code, self.error_message = "send", None, None, None
        self.delivery = self.finished_at = self.accepted_at = None
        self.polls = self.send_attempts = self.report_attempts = 0
        self.token_refreshed = self.reported = False
        self.requeues += 1
        self.requeued_at = at
        self.record(at, "requeued", f"re-queued by an operator (#{self.requeues})")

    @property
    def send_started_at(self) -> float:
        """Where the send deadline counts from."""
        return self.requeued_at if self.requeued_at is not None else self.received_at

    @property
    def parts_sent(self) -> int:
        return sum(1 for part in self.parts if part.cast_message_id)


class RefusedMessage(BaseModel):
    """A message GHL sent for a location without an installation, never sent, that no token
    could report to GHL (what the operator sees: no number, no text)."""

    message_id: str
    location_id: str
    received_at: float
    refused_at: float
    reason: str


class LoggedReceipt(BaseModel):
    """A message as a key's last logs reads showed it (`status` in the status endpoint's words,
    app/outbound/receipts.py `status_of_log`), and when it was last seen there."""

    status: str
    dlr_status: str | None = None
    error_message: str | None = None
    seen_at: float


class ReceiptLedger(BaseModel):
    """What the logs reads of one Cast key found, for every process: the entries by Cast
    message id, when the last read that worked started, and when the last one failed."""

    read_at: float | None = None
    failed_at: float | None = None
    entries: dict[str, LoggedReceipt] = Field(default_factory=dict)

    @property
    def failing(self) -> bool:
        """The last read failed: its parts are asked by status meanwhile."""
        return self.failed_at is not None and self.failed_at > (self.read_at or 0.0)

    def merged(
        self,
        entries: dict[str, LoggedReceipt],
        *,
        read_at: float | None,
        failed_at: float | None,
        keep_since: float,
    ) -> "ReceiptLedger":
        """With a read's outcome added; entries last seen before `keep_since` are dropped."""
        kept = {
            cast_id: entry
            for cast_id, entry in (self.entries | entries).items()
            if entry.seen_at >= keep_since
        }
        return ReceiptLedger(
            read_at=_latest(self.read_at, read_at),
            failed_at=_latest(self.failed_at, failed_at),
            entries=kept,
        )


def _latest(a: float | None, b: float | None) -> float | None:
    return max((t for t in (a, b) if t is not None), default=None)
