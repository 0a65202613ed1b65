"""Opt-out rules shared by the inbound worker (STOP/START), the outbound worker (refusing sends,
Cast's refusals), the Cast sync and the operators (admin API, CLI)."""

import logging
import time
from collections.abc import Callable

from app.config import Settings
from app.kit.errors import ApiError
from app.kit.logs import mask_phone, mask_phones_in
from app.metrics import Counters
from app.optouts.keywords import Keyword, match_keyword
from app.optouts.repository import DndQueue, OptOutList, entry_id
from app.optouts.schemas import (
    OUR_DND_MARK,
    DndTask,
    OptOut,
    OptOutView,
    Source,
    lifted_note,
    minute,
)
from app.phone import InvalidPhoneNumber, to_e164

log = logging.getLogger(__name__)


class OptOutService:
    def __init__(
        self,
        settings: Settings,
        optouts: OptOutList,
        dnd: DndQueue,
        counters: Counters,
        wake_dnd: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._list = optouts
        self._dnd = dnd
        self._counters = counters
        self._wake_dnd = wake_dnd
        self._clock = clock

    def keyword(self, text: str) -> Keyword | None:
        return match_keyword(text, self._settings.opt_out_keywords, self._settings.opt_in_keywords)

    # Recording ----------------------------------------------------------------------------
    async def opt_out(
        self,
        location_id: str,
        phone_e164: str,
        *,
        source: Source,
        at: float,
        keyword: str | None = None,
        sender_id: str | None = None,
    ) -> OptOut:
        """Put the number on the location's list (once); the entry that is there."""
        optout = OptOut(
            location_id=location_id,
            phone=phone_e164,
            source=source,
            at=at,
            recorded_at=self._clock(),
            keyword=keyword,
            sender_id=sender_id,
        )
        if not await self._list.add(optout):
            return await self._list.get(location_id, phone_e164) or optout
        self._counters.inc("optouts_recorded", reason=source)
        log.info(
            "recipient opted out",
            extra={"location_id": location_id, "to": mask_phone(phone_e164), "source": source},
        )
        return optout

    async def opt_in(self, location_id: str, phone_e164: str, *, keyword: str) -> bool:
        """Take the number off the location's list; False when it was not on it."""
        removed = await self._list.remove(location_id, phone_e164)
        self._counters.inc("optins_recorded", reason="keyword")
        log.info(
            "recipient opted in",
            extra={
                "location_id": location_id,
                "to": mask_phone(phone_e164),
                "keyword": keyword,
                "was_opted_out": removed is not None,
            },
        )
        return removed is not None

    async def request_dnd(
        self,
        task_id: str,
        location_id: str,
        phone_e164: str,
        *,
        opt_out: bool,
        note: str,
        source: str,
        contact_id: str | None = None,
        only_ours: bool = False,
    ) -> bool:
        """Queue the contact's SMS DND update for GHL, once per `task_id`."""
        task = DndTask(
            id=task_id,
            location_id=location_id,
            phone=phone_e164,
            contact_id=contact_id,
            opt_out=opt_out,
            note=note,
            source=source,
            created_at=self._clock(),
            only_ours=only_ours,
        )
        task.record(task.created_at, "queued", note)
        if not await self._dnd.add(task):
            return False
        self._wake_dnd()
        return True

    # GHL's ContactDndUpdate -----------------------------------------------------------------
    async def apply_ghl_dnd(
        self, location_id: str, phone: str | None, *, blocked: bool, message: str = ""
    ) -> str:
        """A contact's SMS DND set or cleared in GHL: set, the number goes on the list (source
        `ghl`); cleared, only a `ghl` entry comes off (a recipient's own STOP stays until they
        reply START). An echo of a DND the bridge set itself changes nothing. The outcome."""
        try:
            number = to_e164(phone or "")
        except InvalidPhoneNumber:
            return "ignored"  # no number the bridge texts
        if blocked:
            if OUR_DND_MARK in message:
                return "unchanged"  # the bridge's own DND, seen again
            listed = await self._list.get(location_id, number)
            if listed is not None:
                return "unchanged"
            await self.opt_out(location_id, number, source="ghl", at=self._clock())
            return "opted_out"
        listed = await self._list.get(location_id, number)
        if listed is None:
            return "unchanged"
        if listed.source != "ghl":
            log.info(
                "SMS DND cleared in GHL; the recipient's own opt-out stays",
                extra={
                    "location_id": location_id,
                    "to": mask_phone(number),
                    "source": listed.source,
                },
            )
            return "kept"
        await self._list.remove(location_id, number)
        self._counters.inc("optouts_lifted", reason="ghl")
        log.info(
            "SMS DND cleared in GHL: opt-out lifted",
            extra={"location_id": location_id, "to": mask_phone(number)},
        )
        return "opted_in"

    # The outbound worker --------------------------------------------------------------------
    async def refusal(self, location_id: str, to: str | None) -> OptOut | None:
        """The opt-out that forbids texting `to` (any PH format) from this location, or None."""
        try:
            phone = to_e164(to or "")
        except InvalidPhoneNumber:
            return None
        return await self._list.get(location_id, phone)

    def refused(self, optout: OptOut) -> None:
        self._counters.inc("sends_refused_optout", reason=optout.source)

    # Operators ----------------------------------------------------------------------------
    async def count(self, location_id: str) -> int:
        return await self._list.count(location_id)

    async def listing(self, location_id: str) -> list[OptOutView]:
        return [
            OptOutView.of(optout, entry_id(location_id, optout.phone))
            for optout in await self._list.of_location(location_id)
        ]

    async def lift(self, location_id: str, number: str, reason: str, by: str) -> OptOutView:
        """An operator takes a number (any PH format, or its listed `id`) off the list."""
        phone = await self._phone_of(location_id, number)
        removed = await self._list.remove(location_id, phone) if phone else None
        if removed is None:
            raise ApiError(
                404, "optout_not_found", f"{number!r} is not on this location's opt-out list"
            )
        self._counters.inc("optouts_lifted", reason=by)
        if removed.source != "ghl":  # the bridge set SMS DND in GHL for it: cleared too
            now = self._clock()
            await self.request_dnd(
                f"lifted:{location_id}:{phone}:{now:.3f}",
                location_id,
                removed.phone,
                opt_out=False,
                note=lifted_note(now),
                source=by,
                only_ours=True,
            )
        log.warning(
            "opt-out lifted by an operator",
            extra={
                "location_id": location_id,
                "to": mask_phone(phone),
                "source": removed.source,
                "opted_out_at": minute(removed.at),
                "by": by,
                "reason": mask_phones_in(reason),
            },
        )
        return OptOutView.of(removed, entry_id(location_id, removed.phone))

    async def _phone_of(self, location_id: str, number: str) -> str | None:
        try:
            return to_e164(number)
        except InvalidPhoneNumber:
            pass
        for optout in await self._list.of_location(location_id):
            if entry_id(location_id, optout.phone) == number.strip().lower():
                return optout.phone
        return None
