"""Cast delivery receipts (DLR) in words a GHL user understands.

Cast's `success: true` only means queued. The status endpoint tells the truth later:
`delivered` is confirmed; `undelivered` and `failed` are final failures; `sent`, `pending`,
anything unknown, and errors of the status endpoint itself mean "not known yet".
The message logs (`/sms/logs`) tell the same truth in other words: an entry's `status` is only
the submission's (`sent`/`failed`), its `dlr_status` is the carrier's receipt (`status_of_log`).
"""

from enum import StrEnum

from app.cast.schemas import SmsLog, StatusResult


class Receipt(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"


_FAILED_STATUSES = {"undelivered", "failed", "rejected", "expired"}

# A logs entry's carrier receipt as the status endpoint would word it (cast-api.md §4.1).
_STATUS_OF_DLR = {
    "DELIVRD": "delivered",
    "ACCEPTD": "pending",
    "UNDELIV": "undelivered",
    "REJECTD": "undelivered",
    "EXPIRED": "undelivered",
}

_CARRIER_REASONS = {
    "REJECTD": "Rejected by the carrier (REJECTD) — is the sender ID approved?",
    "UNDELIV": "The carrier could not deliver it (UNDELIV) — is the number in service?",
    "EXPIRED": "The carrier gave up before the handset could be reached (EXPIRED)",
}


def classify(result: StatusResult) -> Receipt:
    status = result.status.lower()
    if status == "delivered":
        return Receipt.DELIVERED
    if status in _FAILED_STATUSES:
        return Receipt.FAILED
    return Receipt.UNKNOWN


def status_of_log(entry: SmsLog) -> StatusResult:
    """A logs entry as the status endpoint's answer: a failed submission is `failed`; else its
    carrier receipt decides (none yet, or one we do not know: `sent`, not known yet)."""
    dlr = (entry.dlr_status or "").upper() or None
    failed = entry.status.lower() == "failed"
    status = "failed" if failed else _STATUS_OF_DLR.get(dlr or "", "sent")
    return StatusResult(
        message_id=entry.id,
        status=status,
        dlr_status=dlr,
        error_message=entry.error_message,
        delivered_at=entry.delivered_at,
    )


def failure_code(result: StatusResult) -> str:
    return (result.dlr_status or result.status).upper()


def failure_reason(result: StatusResult) -> str:
    dlr = (result.dlr_status or "").upper()
    if dlr in _CARRIER_REASONS:
        reason = _CARRIER_REASONS[dlr]
    elif result.status.lower() == "failed":
        reason = "Cast could not hand the SMS to the carrier"
    else:
        reason = f"Not delivered ({dlr or result.status})"
    if result.error_message:
        reason += f": {result.error_message}"
    return reason


def next_poll_delay(polls_done: int, *, first: float, cap: float) -> float:
    """15 s, 30 s, 60 s, ... capped (with the defaults)."""
    return min(cap, first * 2 ** min(polls_done, 20))
