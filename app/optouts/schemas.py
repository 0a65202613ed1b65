"""An opt-out on the suppression list, a DND update for GHL, and what operators see of them."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from app.jobs import Job
from app.kit.logs import mask_phone
from app.ph_time import PH_TIME
from app.timestamps import UtcTime

# keyword: the recipient replied STOP; cast: on Cast's unsubscribe list (the sync);
# cast_refusal: Cast refused a send because the number unsubscribed; ghl: SMS DND set in GHL
# (a ContactDndUpdate webhook).
Source = Literal["keyword", "cast", "cast_refusal", "ghl"]
# The mark on every SMS DND message the bridge writes in GHL (`dnd_note`): an echo of our own
# DND in a ContactDndUpdate is known by it.
OUR_DND_MARK = "(Cast SMS)"


def day(at: float) -> str:
    """The date in the Philippines (where the recipients and the GHL users are): '2 Dec 2026'.
    Not 2026-12-02: eight digits with dashes read as a phone number to the masking of failure
    reasons (app/kit/logs.py), which would turn it into '****1202'."""
    when = datetime.fromtimestamp(at, PH_TIME)
    return f"{when.day} {when:%b %Y}"


def minute(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


class OptOut(BaseModel):
    """One number a location must not text (the `optouts` collection)."""

    location_id: str
    phone: str  # E.164
    source: Source
    at: float  # when the recipient opted out, as far as the bridge knows
    recorded_at: float
    keyword: str | None = None  # the word replied (source keyword)
    sender_id: str | None = None  # the sender ID unsubscribed from (Cast sources)

    @property
    def reason(self) -> str:
        """Why a send was refused, in words a GHL user understands."""
        if self.source == "keyword":
            return f"The recipient opted out (replied {self.keyword or 'STOP'} on {day(self.at)})"
        if self.source == "cast":
            return f"The recipient opted out through Cast's unsubscribe link (on {day(self.at)})"
        if self.source == "ghl":
            return f"The contact has SMS DND set in GHL (since {day(self.at)})"
        return (
            "The recipient opted out through Cast's unsubscribe link "
            f"(Cast refused an SMS to them on {day(self.at)})"
        )

    @property
    def dnd_note(self) -> str:
        return dnd_note(self.source, self.at, keyword=self.keyword, sender_id=self.sender_id)


def dnd_note(
    source: Source, at: float, *, keyword: str | None = None, sender_id: str | None = None
) -> str:
    """The message stored with the contact's SMS DND in GHL: when and why."""
    if source == "keyword":
        return f"Replied {keyword or 'STOP'} on {minute(at)} {OUR_DND_MARK}"
    sender = f" for sender ID {sender_id}" if sender_id else ""
    return f"Unsubscribed through Cast's link{sender} on {minute(at)} {OUR_DND_MARK}"


def lifted_note(at: float) -> str:
    """The SMS DND message when an operator's lift clears the DND the bridge set."""
    return f"Opt-out lifted by an operator on {minute(at)} {OUR_DND_MARK}"


def lasts_until(source: Source) -> str:
    """What takes a number off the list, by how it got there (the CLI and the admin API)."""
    if source == "keyword":
        return (
            "the recipient replies START, or an operator lifts it "
            "(clearing SMS DND in GHL does not: the recipient asked)"
        )
    if source == "ghl":
        return "SMS DND is cleared in GHL, the recipient replies START, or an operator lifts it"
    return "the recipient replies START, or an operator lifts it"


DndOutcome = Literal["pending", "set", "cleared", "unchanged", "superseded", "no_contact", "failed"]


class DndTask(Job):
    """Set or clear one contact's SMS DND in GHL (a work item of the `dnd` queue)."""

    history_limit = 30

    id: str
    location_id: str
    phone: str  # E.164: finds the contact when its id is not known
    contact_id: str | None = None
    opt_out: bool  # True: dndSettings.SMS.status "active"; False: "inactive"
    only_ours: bool = False  # clear only an SMS DND the bridge set (its message has our mark)
    note: str  # dndSettings.SMS.message
    source: str
    created_at: float
    attempts: int = 0
    outcome: DndOutcome = "pending"
    error: str | None = None
    finished_at: float | None = None

    def finish(self, at: float, outcome: DndOutcome, error: str | None = None) -> None:
        self.outcome, self.error, self.finished_at = outcome, error, at
        self.record(at, outcome, error)


class OptOutView(BaseModel):
    """An opt-out as the admin API and the CLI show it: the number masked; `id` names it for
    removal without the full number."""

    id: str
    location_id: str
    phone: str
    source: Source
    keyword: str | None
    sender_id: str | None
    at: UtcTime
    recorded_at: UtcTime
    until: str  # what takes it off the list

    @classmethod
    def of(cls, optout: OptOut, entry_id: str) -> "OptOutView":
        return cls(
            until=lasts_until(optout.source),
            id=entry_id,
            location_id=optout.location_id,
            phone=mask_phone(optout.phone),
            source=optout.source,
            keyword=optout.keyword,
            sender_id=optout.sender_id,
            at=optout.at,
            recorded_at=optout.recorded_at,
        )
