"""Operator actions, shared by the admin API and the `cast-ghl` CLI (same repositories, same
rules): installations, a message's history, re-queueing a failed message, unroutable inbound
SMS, a location's sender ID."""

import logging
import time
from collections.abc import Callable

from app.admin.schemas import (
    CastKeyRate,
    CastRates,
    MessageView,
    OptOutList,
    ReencryptResult,
    SenderIdResult,
    UnroutableView,
)
from app.cast.accounts import CastAccounts, account_from
from app.cast.pacing import CastPacer
from app.cast.schemas import Channel
from app.inbound.repository import InboxRepository
from app.inbound.service import InboundService
from app.kit.errors import ApiError
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.locations.service import save_settings
from app.metrics import Counters
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.schemas import InstallationSummary
from app.optouts.schemas import OptOutView
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository

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
        wake_outbound: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        optouts: OptOutService | None = None,
    ) -> None:
        self._pacer = pacer
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
        return await self._installations.summaries()

    async def reencrypt(self) -> ReencryptResult:
        """Everything encrypted at rest, encrypted again with the newest TOKEN_ENCRYPTION_KEY."""
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
    def _require_optouts(self) -> OptOutService:
        if self._optouts is None:
            raise ApiError(503, "optouts_unavailable", "the opt-out list is not available")
        return self._optouts

    async def optouts(self, location_id: str) -> OptOutList:
        """A location's opt-out list (numbers masked), oldest number first."""
        rows = await self._require_optouts().listing(location_id)
        return OptOutList(location_id=location_id, count=len(rows), optouts=rows)

    async def lift_optout(self, location_id: str, number: str, reason: str, by: str) -> OptOutView:
        """Take a number (or a listed `id`) off the location's list; logged with `reason`."""
        lifted = await self._require_optouts().lift(location_id, number, reason, by)
        self._counters.inc("admin_optout_lifted")
        return lifted

    # Per-location sender ID ---------------------------------------------------------------
    async def set_sender_id(
        self, location_id: str, sender_id: str | None, channel: Channel | None = None
    ) -> SenderIdResult:
        """The Go bridge's admin call: the sender ID a location's SMS are sent with (checked
        against the account's approved sender IDs when Cast answers), and optionally its
        channel set by hand."""
        stored = await self._location_settings.get(location_id)
        now = self._clock()
        updated, check = await save_settings(
            self._location_settings,
            self._accounts,
            LocationSettings(
                location_id=location_id,
                cast_api_key=stored.cast_api_key if stored else None,
                sender_id=sender_id,
                channel=channel,
                low_credit_threshold=stored.low_credit_threshold if stored else None,
                enabled=stored.enabled if stored else True,
                updated_at=now,
                updated_by="admin",
            ),
        )
        self._counters.inc("admin_sender_id_set")
        installed = await self._installations.get(location_key(location_id)) is not None
        log.info(
            "sender ID set by an operator",
            extra={
                "location_id": location_id,
                "sender_id": check.sender_id,
                "channel": channel,
                "installed": installed,
            },
        )
        account = await self._accounts.with_channel(account_from(updated, self._accounts.default))
        return SenderIdResult(
            location_id=location_id,
            sender_id=check.sender_id,
            enabled=updated.enabled,
            own_api_key=updated.cast_api_key is not None,
            effective_sender_id=account.sender_id,
            channel=account.channel,
            channel_source=account.channel_source,
            checked_with_cast=check.checked,
            note=check.note,
            installed=installed,
            updated_at=now,
        )
