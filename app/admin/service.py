"""Operator actions, shared by the admin API and the `cast-ghl` CLI (same repositories, same
rules): installations, a message's history, re-queueing a failed message, unroutable inbound
SMS, a location's sender ID."""

import logging
import time
from collections.abc import AsyncIterator, Callable

from app.admin.schemas import (
    CastKeyRate,
    CastRates,
    MessageView,
    OptOutList,
    ReencryptResult,
    RefusedMessageView,
    SenderIdResult,
    UnroutableView,
)
from app.cast.accounts import CastAccounts, account_from, is_assigned
from app.cast.pacing import CastPacer
from app.cast.schemas import Channel
from app.cast.senders import sender_key
from app.inbound.repository import InboxRepository
from app.inbound.service import InboundService
from app.kit.errors import ApiError
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.locations.service import check_settings, store_settings
from app.messages.schemas import MessagePage, MessageQuery
from app.messages.service import MessageLog
from app.metrics import Counters
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.schemas import InstallationSummary
from app.optouts.schemas import OptOutView
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository, RefusedMessages
from app.overview.schemas import LocationsOverview
from app.overview.service import OverviewService

log = logging.getLogger(__name__)

# Failures that sending again cannot fix: GHL must send a new message.
NOT_REQUEUEABLE = {"INVALID_PHONE", "EMPTY_MESSAGE"}


class AdminService:
    def __init__(
        self,
        installations: InstallationRepository,
        outbox: OutboxRepository,
        inbox: InboxRepository,
        inbound: InboundService,
        location_settings: LocationSettingsRepository,
        accounts: CastAccounts,
        counters: Counters,
        pacer: CastPacer,
        clock: Callable[[], float] = time.time,
        *,
        wake_outbound: Callable[[], None],
        optouts: OptOutService,
        refused: RefusedMessages,
        message_log: MessageLog,
        overview: OverviewService,
    ) -> None:
        self.message_log = message_log
        self.overview = overview
        self._pacer = pacer
        self._refused = refused
        self._installations = installations
        self._outbox = outbox
        self._inbox = inbox
        self._inbound = inbound
        self._location_settings = location_settings
        self._accounts = accounts
        self._counters = counters
        self._wake_outbound = wake_outbound
        self._clock = clock
        self._optouts = optouts

    async def installations(self) -> list[InstallationSummary]:
        """Every installation (no token), each location's with the name GHL gave it."""
        names = await self.overview.names()
        return [
            summary.model_copy(update={"location_name": names.get(summary.location_id or "")})
            for summary in await self._installations.summaries()
        ]

    async def reencrypt(self) -> ReencryptResult:
        """Everything encrypted at rest, encrypted again with the newest TOKEN_ENCRYPTION_KEY;
        refused (409) while a live bridge lacks that key: it could not read the records."""
        now = self._clock()
        newest, lacking = await self._installations.live_bridges_lacking_newest_key(now)
        if lacking:
            raise ApiError(
                409,
                "bridge_lacks_newest_key",
                f"not re-encrypted: {'; '.join(h.describe(now) for h in lacking)} does not hold "
                f"the newest TOKEN_ENCRYPTION_KEY (fingerprint {newest}): restart it with "
                "the new key list first (new key first, old keys after), then run this again",
            )
        installations = await self._installations.reencrypt()
        settings = await self._location_settings.reencrypt()
        result = ReencryptResult(
            installations=installations[0],
            location_settings=settings[0],
            undecryptable=installations[1] + settings[1],
        )
        log.info("re-encrypted with the newest key", extra=result.model_dump())
        return result

    async def cast_rates(self) -> CastRates:
        """The send rate of every Cast key that drew a 429 (cluster-wide, from the store)."""
        configured = self._pacer.configured_rate
        rates = await self._pacer.rates()
        return CastRates(
            configured=configured,
            keys=[
                CastKeyRate(key=key, rate=rate, slowed=rate < configured)
                for key, rate in sorted(rates.items())
            ],
        )

    # Outbound messages --------------------------------------------------------------------
    async def refused_messages(self) -> list[RefusedMessageView]:
        """Messages for locations without an installation that GHL could not be told about."""
        return [RefusedMessageView.of(refused) for refused in await self._refused.listing()]

    async def locations(self, company_id: str | None = None) -> LocationsOverview:
        """Every sub-account (of one agency when `company_id` is given) at a glance."""
        return await self.overview.overview(company_id)

    async def messages(self, query: MessageQuery) -> MessagePage:
        """A page of the message log (both directions, every location unless filtered)."""
        return await self.message_log.page(query)

    def export_messages(self, query: MessageQuery) -> AsyncIterator[str]:
        """The whole selection as CSV lines."""
        return self.message_log.export_csv(query)

    async def message(self, message_id: str) -> MessageView:
        found = await self._outbox.find(message_id)
        if found is None:
            raise ApiError(404, "message_not_found", f"no outbound message {message_id!r}")
        return MessageView.of(*found)

    async def requeue(self, message_id: str) -> MessageView:
        """Send a failed message again (what was not delivered) and report the new outcome."""
        found = await self._outbox.find(message_id)
        if found is None:
            raise ApiError(404, "message_not_found", f"no outbound message {message_id!r}")
        message, finished = found
        if not finished:
            raise ApiError(
                409, "message_in_progress", "the message is still being sent or reported"
            )
        if message.status != "failed":
            raise ApiError(
                409, "message_delivered", "the message was delivered: it is not sent again"
            )
        if message.error_code in NOT_REQUEUEABLE or message.to is None:
            raise ApiError(
                409,
                "not_requeueable",
                f"a message that failed with {message.error_code} cannot be sent again",
            )
        now = self._clock()
        message.restart(now)
        if not await self._outbox.requeue(message, now):
            raise ApiError(404, "message_not_found", f"no outbound message {message_id!r}")
        self._counters.inc("admin_requeued")
        self._wake_outbound()
        log.info(
            "outbound message re-queued by an operator",
            extra={"message_id": message_id, "requeues": message.requeues},
        )
        return MessageView.of(message, False)

    # Unroutable inbound SMS ---------------------------------------------------------------
    async def unroutable(self, limit: int = 1000) -> list[UnroutableView]:
        return [UnroutableView.of(m) for m in await self._inbound.list_unroutable(limit)]

    async def reroute(self, inbound_id: str, location_id: str) -> None:
        if await self._inbox.get(inbound_id) is None:
            raise ApiError(404, "inbound_not_found", f"no inbound SMS {inbound_id!r}")
        if not await self._inbound.reroute(inbound_id, location_id):
            raise ApiError(
                409,
                "not_reroutable",
                "only a finished, undelivered (unroutable or failed) SMS can be re-routed",
            )

    async def discard(self, inbound_id: str) -> None:
        if not await self._inbox.discard(inbound_id):
            raise ApiError(404, "inbound_not_found", f"{inbound_id!r} is not listed as unroutable")
        self._counters.inc("inbound_discarded")
        log.info(
            "unroutable inbound SMS discarded by an operator", extra={"inbound_id": inbound_id}
        )

    # Opt-outs ------------------------------------------------------------------------------
    async def optouts(self, location_id: str) -> OptOutList:
        """A location's opt-out list (numbers masked), oldest number first."""
        rows = await self._optouts.listing(location_id)
        return OptOutList(location_id=location_id, count=len(rows), optouts=rows)

    async def lift_optout(self, location_id: str, number: str, reason: str, by: str) -> OptOutView:
        """Take a number (or a listed `id`) off the location's list; logged with `reason`."""
        lifted = await self._optouts.lift(location_id, number, reason, by)
        self._counters.inc("admin_optout_lifted")
        return lifted

    # Per-location sender ID ---------------------------------------------------------------
    async def set_sender_id(
        self, location_id: str, sender_id: str | None, channel: Channel | None = None
    ) -> SenderIdResult:
        """The Go bridge's admin call, now the assignment: the sender ID a location's SMS are
        sent with (checked against the account's approved sender IDs when Cast answers), and
        optionally its channel set by hand. Without an own key, the sender is assigned to the
        location (kept with its earlier ones; clearing removes them all) and may be shared only
        by locations of one agency (409 otherwise)."""
        stored = await self._location_settings.get(location_id)
        now = self._clock()
        own_key = stored.cast_api_key if stored else None
        wanted, check = await check_settings(
            self._accounts,
            LocationSettings(
                location_id=location_id,
                cast_api_key=own_key,
                sender_id=sender_id,
                channel=channel,
                low_credit_threshold=stored.low_credit_threshold if stored else None,
                enabled=stored.enabled if stored else True,
                assigned_senders=stored.assigned_senders if stored else [],
                updated_at=now,
                updated_by="admin",
            ),
        )
        shared_with: list[str] = []
        if wanted.sender_id is None:
            wanted.assigned_senders = []
        elif own_key is None:
            shared_with = await self._require_one_agency(location_id, wanted.sender_id)
            if not is_assigned(wanted, wanted.sender_id):
                wanted.assigned_senders = [*wanted.assigned_senders, wanted.sender_id]
        await store_settings(self._location_settings, self._accounts, wanted)
        self._counters.inc("admin_sender_id_set")
        log.info(
            "sender ID set by an operator",
            extra={
                "location_id": location_id,
                "sender_id": check.sender_id,
                "channel": channel,
                "shared_with": shared_with,
            },
        )
        return await self._sender_result(wanted, check.checked, check.note, shared_with)

    async def unassign_sender_id(self, location_id: str, sender_id: str) -> SenderIdResult:
        """Take one default-account sender from a location (its others stay); when it was the
        one in use, the location sends with CAST_SENDER_ID again. 404 when not assigned."""
        stored = await self._location_settings.get(location_id)
        if stored is None or not is_assigned(stored, sender_id):
            raise ApiError(
                404,
                "sender_id_not_assigned",
                f"{sender_id} is not assigned to {location_id}",
                "sender_id",
            )
        wanted = sender_key(sender_id)
        kept = [s for s in stored.assigned_senders if sender_key(s) != wanted]
        in_use = stored.sender_id is not None and sender_key(stored.sender_id) == wanted
        updated = stored.model_copy(
            update={
                "assigned_senders": kept,
                "sender_id": None if in_use else stored.sender_id,
                "channel": None if in_use else stored.channel,
                "updated_at": self._clock(),
                "updated_by": "admin",
            }
        )
        await store_settings(self._location_settings, self._accounts, updated)
        self._counters.inc("admin_sender_id_unassigned")
        log.info(
            "sender ID unassigned by an operator",
            extra={"location_id": location_id, "sender_id": sender_id, "was_in_use": in_use},
        )
        checked = updated.sender_checked and updated.sender_id is not None
        return await self._sender_result(updated, checked, None, [])

    async def _sender_result(
        self, settings: LocationSettings, checked: bool, note: str | None, shared_with: list[str]
    ) -> SenderIdResult:
        account = await self._accounts.with_channel(account_from(settings, self._accounts.default))
        installed = await self._installations.get(location_key(settings.location_id)) is not None
        return SenderIdResult(
            location_id=settings.location_id,
            sender_id=settings.sender_id,
            enabled=settings.enabled,
            own_api_key=settings.cast_api_key is not None,
            effective_sender_id=account.sender_id,
            channel=account.channel,
            channel_source=account.channel_source,
            checked_with_cast=checked,
            note=note,
            assigned_senders=settings.assigned_senders,
            shared_with=shared_with,
            installed=installed,
            updated_at=settings.updated_at,
        )

    async def _require_one_agency(self, location_id: str, sender_id: str) -> list[str]:
        """The other locations assigned `sender_id` on the default account, all of this
        location's agency; 409 naming them when one belongs to another agency (or either
        agency is not known: the location is not installed)."""
        others = [
            other.location_id
            for other in await self._location_settings.locations_naming(sender_id)
            if other.location_id != location_id
            and other.cast_api_key is None
            and not other.key_unreadable
            and is_assigned(other, sender_id)
        ]
        if not others:
            return []
        company = await self._company_of(location_id)
        foreign = [other for other in others if await self._company_of(other) != company]
        if company is None or foreign:
            held_by = ", ".join(foreign or others)
            why = "another agency" if company else "this location's agency is unknown: install it"
            raise ApiError(
                409,
                "sender_id_assigned_elsewhere",
                f"{sender_id} is assigned to {held_by} ({why}): a sender belongs to one agency; "
                "clear it there first",
                "sender_id",
            )
        return others

    async def _company_of(self, location_id: str) -> str | None:
        found = await self._installations.get(location_key(location_id))
        if found is not None and found[0].company_id:
            return found[0].company_id
        return await self._installations.company_of(location_id)
