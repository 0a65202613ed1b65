"""Cast's unsubscribe list into the suppression list and GHL's DND, one process at a time.

Every CAST_OPTOUT_SYNC_SECONDS each process tries to take the named lease `cast-optout-sync`;
the holder renews it at every run, so it stays with one process while that process lives (and
passes to another one within a minute or so after it dies). The holder reads
`GET /api/v1/account/unsubscribed` once for every Cast key that installed locations send with,
and puts each entry on the list of every location that sends with that key and sender ID (a
location without a sender ID sends with the account's default, so any of the key's sender IDs
counts) and has not had it yet, and queues the contact's DND update. The ledger keeps, per
entry, the locations it was put on, in the store: a restart, or another process taking over,
does not do it again (a crash between the two repeats only idempotent steps), a location that
moves to the key (or to the entry's sender ID) later still gets the key's earlier entries, and
one that had an entry never gets it again (a START since stays).

Entries handled before the locations were kept (issue 28) count as put on the locations that
match them at the first sync after the upgrade: those of the key then got them, which ones was
not kept.
"""

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from app.cast.accounts import CastAccounts
from app.cast.client import CastClient, CastError
from app.cast.keys import key_fingerprint, key_label, legacy_fingerprint
from app.cast.pacing import CastPacer
from app.cast.schemas import Unsubscribed
from app.cast.senders import sender_key
from app.config import Settings
from app.kit.logs import mask_phone
from app.metrics import Counters
from app.oauth.repository import InstallationRepository
from app.optouts.repository import SyncLedger
from app.optouts.schemas import dnd_note
from app.optouts.service import OptOutService
from app.phone import InvalidPhoneNumber, to_e164

log = logging.getLogger(__name__)

# How long the lease outlives a missed run before another process may take over.
LEASE_MARGIN_SECONDS = 60.0
# Shutting down with the database gone: give up the lease's release after this (it expires).
RELEASE_TIMEOUT_SECONDS = 2.0

Sender = tuple[str, str | None]  # (location id, its sender ID or None: the account's default)


def _timestamp(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def sender_matches(entry: Unsubscribed, sender_id: str | None) -> bool:
    """A sender name exactly as Cast lists it, a SIM number in any PH format."""
    if sender_id is None or not entry.sender_id:
        return True
    return sender_key(entry.sender_id) == sender_key(sender_id)


class CastOptOutSync:
    def __init__(
        self,
        settings: Settings,
        ledger: SyncLedger,
        installations: InstallationRepository,
        accounts: CastAccounts,
        cast: CastClient,
        pacer: CastPacer,
        optouts: OptOutService,
        counters: Counters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._interval = settings.cast_optout_sync_seconds
        self._ledger = ledger
        self._installations = installations
        self._accounts = accounts
        self._cast = cast
        self._pacer = pacer
        self._optouts = optouts
        self._counters = counters
        self._clock = clock
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = asyncio.Event()
        self._current: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Until `stop`: every interval, sync if this process holds (or takes) the lease."""
        if self._interval <= 0:
            return
        try:
            while not self._stop.is_set():
                self._current = asyncio.create_task(self._turn(), name="cast-optout-sync-turn")
                await asyncio.wait({self._current})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._interval)
        finally:
            if self._current is not None:
                self._current.cancel()
            with contextlib.suppress(Exception):
                release = self._ledger.release_lease(self._owner)
                await asyncio.wait_for(release, RELEASE_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """Stop now: a pass in progress is abandoned (every step of it is idempotent), so a
        database or Cast that does not answer cannot hold up shutdown."""
        self._stop.set()
        if self._current is not None:
            self._current.cancel()

    async def _turn(self) -> None:
        try:
            seconds = self._interval + LEASE_MARGIN_SECONDS
            if not await self._ledger.hold_lease(self._owner, now=self._clock(), seconds=seconds):
                return
            await self.sync_once()
        except Exception:
            self._counters.inc("optout_syncs", reason="failed")
            log.exception("Cast opt-out sync failed; trying again next interval")

    async def sync_once(self) -> int:
        """One pass over every key in use; the number of entries handled now."""
        handled = 0
        for api_key, senders in (await self._senders_by_key()).items():
            await self._pacer.before_poll()
            try:
                entries = await self._cast.unsubscribed(api_key)
            except CastError as exc:
                self._counters.inc("optout_syncs", reason="failed")
                log.warning(
                    "could not read Cast's unsubscribe list",
                    extra={"key": key_label(api_key), "reason": exc.message},
                )
                continue
            handled += await self._handle(api_key, entries, senders)
        self._counters.inc("optout_syncs", reason="ok")
        log.info("Cast opt-out sync ran", extra={"new_entries": handled, "owner": self._owner})
        return handled

    async def _senders_by_key(self) -> dict[str, list[Sender]]:
        """Installed locations grouped by the Cast key they send with."""
        groups: dict[str, list[Sender]] = defaultdict(list)
        locations = {s.location_id for s in await self._installations.summaries() if s.location_id}
        for location_id in sorted(locations):
            try:
                account = await self._accounts.configured(location_id)  # the key only
            except ValueError:  # its own key cannot be decrypted: it cannot send either
                continue
            if account.api_key:
                groups[account.api_key].append((location_id, account.sender_id))
        return groups

    async def _handle(
        self, api_key: str, entries: list[Unsubscribed], senders: list[Sender]
    ) -> int:
        """Put each entry on the key's matching locations that have not had it: the number of
        entries put on at least one."""
        key_id, legacy_id = key_fingerprint(api_key), legacy_fingerprint(api_key)
        done = await self._ledger.handled(key_id)
        legacy = await self._ledger.handled_before_locations_were_kept(legacy_id)
        handled = 0
        for entry in entries:
            name = f"{entry.phone}|{entry.sender_id or ''}|{entry.unsubscribed_at}"
            matching = {location for location, sender in senders if sender_matches(entry, sender)}
            if name not in done and name in legacy:
                done[name] = await self._adopt(key_id, legacy_id, name, matching)
            due = matching - done.get(name, set())
            if not due:
                continue
            await self._apply(entry, [s for s in senders if s[0] in due])
            done[name] = done.get(name, set()) | due
            await self._ledger.mark_handled(key_id, name, done[name], self._clock())
            handled += 1
        return handled

    async def _adopt(self, key_id: str, legacy_id: str, name: str, matching: set[str]) -> set[str]:
        """An entry handled before the locations were kept: the ones it matches now count as
        having had it (its record moves to the key's identity)."""
        await self._ledger.mark_handled(key_id, name, matching, self._clock())
        await self._ledger.forget_legacy(legacy_id, name)
        return matching

    async def _apply(self, entry: Unsubscribed, senders: list[Sender]) -> None:
        try:
            phone = to_e164(entry.phone)
        except InvalidPhoneNumber:
            log.warning(
                "Cast unsubscribe entry is not a PH mobile number; skipped",
                extra={"to": mask_phone(entry.phone)},
            )
            return
        at = _timestamp(entry.unsubscribed_at, self._clock())
        for location_id, sender_id in senders:
            if not sender_matches(entry, sender_id):
                continue
            await self._optouts.opt_out(
                location_id, phone, source="cast", at=at, sender_id=entry.sender_id
            )
            await self._optouts.request_dnd(
                f"cast:{location_id}:{phone}:{entry.sender_id or ''}:{entry.unsubscribed_at}",
                location_id,
                phone,
                opt_out=True,
                note=dnd_note("cast", at, sender_id=entry.sender_id),
                source="cast",
            )
