"""The DND worker: sets or clears a contact's SMS do-not-disturb in GHL, one queued task each.

Same leased queue as the outbox and the inbox (`app/worker.py`). The contact is read first
(`GET /contacts/{id}`) and only its `dndSettings.SMS` entry is changed (`PUT /contacts/{id}`
with the other channels' settings as they were), so nothing else the GHL user set is lost; an
SMS DND already as wanted is left alone, and a `permanent` one is never cleared. GHL 429/5xx/
timeouts are retried with backoff for DND_DEADLINE_SECONDS; a 401 refreshes the token once.
The opt-out list is the truth: a task whose change the list no longer shows (STOP then START,
an opt-out an operator lifted before GHL was reached) is `superseded`, so tasks run out of order
never leave GHL disagreeing with the list.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.ghl.client import GHLClient, GHLError, retry_verdict
from app.kit.logs import mask_phone, mask_phones_in
from app.metrics import Counters
from app.oauth.tokens import TokenService, TokenUnavailable
from app.optouts.repository import DndQueue, OptOutList
from app.optouts.schemas import OUR_DND_MARK, DndOutcome, DndTask
from app.worker import Deadline, JobWorker, RetryPolicy

log = logging.getLogger(__name__)

GHL_BACKOFF_BASE, GHL_BACKOFF_CAP = 2.0, 60.0
DND_DEADLINE_SECONDS = 3600.0
# GHL's SMS DND states that already stop SMS: an opt-out leaves them, an opt-in clears "active"
# only ("permanent" is the GHL user's decision).
BLOCKING = {"active", "permanent"}


def _sms_setting(contact: dict[str, Any]) -> dict[str, Any]:
    settings = contact.get("dndSettings") or {}
    sms = settings.get("SMS") if isinstance(settings, dict) else None
    return sms if isinstance(sms, dict) else {}


def sms_dnd(contact: dict[str, Any]) -> str | None:
    return _sms_setting(contact).get("status")


def sms_dnd_message(contact: dict[str, Any]) -> str:
    message = _sms_setting(contact).get("message")
    return message if isinstance(message, str) else ""


class DndWorker(JobWorker[DndTask]):
    name, what, id_field = "dnd", "a DND update", "dnd_id"
    retry_policy = RetryPolicy(base=GHL_BACKOFF_BASE, cap=GHL_BACKOFF_CAP)

    def __init__(
        self,
        settings: Settings,
        queue: DndQueue,
        ghl: GHLClient,
        tokens: TokenService,
        counters: Counters,
        optouts: OptOutList,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings, queue, clock)
        self._optouts = optouts
        self._ghl = ghl
        self._tokens = tokens
        self._counters = counters

    def _deadline(self, task: DndTask, now: float) -> Deadline:
        return Deadline(task.created_at, DND_DEADLINE_SECONDS, task.attempts)

    def _give_up(self, task: DndTask, now: float, what: str) -> float | None:
        task.finish(now, "failed", f"Gave up after {DND_DEADLINE_SECONDS:.0f}s: {what}")
        self._counters.inc("dnd_updates", reason="failed")
        return None

    async def _advance(self, task: DndTask) -> float | None:
        """Update GHL: when to retry, or None once the outcome is final."""
        task.attempts += 1
        listed = await self._optouts.get(task.location_id, task.phone) is not None
        try:
            outcome = await self._with_token(task) if listed == task.opt_out else "superseded"
        except (GHLError, TokenUnavailable) as exc:
            return self._failed(task, exc)
        task.finish(self._clock(), outcome)
        self._counters.inc("dnd_updates", reason=outcome)
        log.info(
            "contact SMS DND " + ("set" if task.opt_out else "cleared") + f": {outcome}",
            extra={
                "dnd_id": task.id,
                "location_id": task.location_id,
                "contact_id": task.contact_id,
                "to": mask_phone(task.phone),
                "source": task.source,
            },
        )
        return None

    async def _with_token(self, task: DndTask) -> DndOutcome:
        return await self._tokens.with_location_token(
            task.location_id,
            lambda token: self._update(token, task),
            lambda: task.spend_token_refresh(self._clock()),
        )

    async def _update(self, token: str, task: DndTask) -> DndOutcome:
        if task.contact_id is None:
            found = await self._ghl.find_contact_by_phone(token, task.location_id, task.phone)
            if found is None:
                return "no_contact"  # nobody to protect in this location
            task.contact_id = str(found["id"])
        try:
            contact = await self._ghl.get_contact(
                token, task.contact_id, location_id=task.location_id
            )
        except GHLError as exc:
            if exc.status == 404:
                return "no_contact"  # deleted meanwhile
            raise
        current = sms_dnd(contact)
        if (current in BLOCKING) if task.opt_out else (current != "active"):
            return "unchanged"
        if task.only_ours and OUR_DND_MARK not in sms_dnd_message(contact):
            return "unchanged"  # set in GHL by someone else: theirs to clear
        channels = dict(contact.get("dndSettings") or {})
        channels["SMS"] = {"status": "active" if task.opt_out else "inactive", "message": task.note}
        await self._ghl.update_contact(
            token, task.contact_id, {"dndSettings": channels}, location_id=task.location_id
        )
        return "set" if task.opt_out else "cleared"

    def _failed(self, task: DndTask, exc: GHLError | TokenUnavailable) -> float | None:
        now = self._clock()
        retryable, rate_limited = retry_verdict(exc)
        due_at = self.retry_policy.retry_at(
            self._deadline(task, now), now, retryable=retryable, rate_limited=rate_limited
        )
        if due_at is not None:
            task.record(now, "ghl_retry", f"{exc.message}; retrying in {due_at - now:.1f}s")
            self._counters.inc("dnd_retries")
            return due_at
        detail = exc.message
        if isinstance(exc, GHLError) and exc.body:
            detail = f"{detail}: {exc.body}"
        task.finish(now, "failed", mask_phones_in(detail))
        self._counters.inc("dnd_updates", reason="failed")
        log.error(
            "could not update the contact's SMS DND in GHL",
            extra={
                "dnd_id": task.id,
                "location_id": task.location_id,
                "to": mask_phone(task.phone),
                "reason": exc.message,
            },
        )
        return None
