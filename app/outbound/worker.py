"""The outbox worker: claims due messages with a lease, sends them through Cast, reports to GHL.

Each claimed message goes through two stages. `send`: every part goes to Cast with an
idempotency key derived from the GHL messageId and part number, so a retry after a timeout or a
crash (the lease expires and another worker re-claims the message) gets Cast's cached answer
instead of a second SMS. `report`: the final status goes to GHL. Failures that may pass are
rescheduled with backoff (the lease is released); nothing waits in memory.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from app.cast.account import CastAccountInfo
from app.cast.accounts import KEY_NOT_HELD_CODE, CastAccount, CastAccounts
from app.cast.client import CastClient, CastError
from app.cast.pacing import CastPacer, ComeBack
from app.cast.schemas import Channel, SendRequest, SendResult, StatusResult
from app.config import Settings
from app.ghl.client import GHLClient, GHLError
from app.ghl.schemas import StatusError, StatusUpdate
from app.metrics import Counters
from app.oauth.crypto import TokenCipher, UndecryptableError
from app.oauth.tokens import TokenService, TokenUnavailable
from app.optouts.schemas import OptOut, dnd_note
from app.optouts.service import OptOutService
from app.outbound.receipts import Receipt, classify, failure_code, failure_reason, next_poll_delay
from app.outbound.reconcile import ReceiptReconciler
from app.outbound.repository import OutboxRepository, RefusedMessages
from app.outbound.schemas import OutboundMessage, Part, RefusedMessage
from app.phone import to_e164
from app.worker import Deadline, JobWorker, RetryPolicy

log = logging.getLogger(__name__)

CAST_BACKOFF_BASE, CAST_BACKOFF_CAP = 1.0, 60.0
KEY_WAIT_SECONDS = 30.0  # a message whose installation needs a key this bridge lacks
GHL_BACKOFF_BASE, GHL_BACKOFF_CAP = 2.0, 60.0
GHL_RETRY = RetryPolicy(base=GHL_BACKOFF_BASE, cap=GHL_BACKOFF_CAP)  # status reports
NOT_INSTALLED = "NOT_INSTALLED"
KEY_LOST = (
    "The Cast key this message was first sent with cannot be decrypted (TOKEN_ENCRYPTION_KEY "
    "changed); it is not sent again with another account's key"
)

# Told once Cast accepted a message (never a test SMS): (to, location_id, sender ID, at). Replies
# from that number may then be routed back to the location (the inbound side's recipient
# directory); best effort, it must not raise.
type RecipientHook = Callable[[str | None, str, str | None, float], Awaitable[None]]


def _stage_of(message: OutboundMessage) -> Literal["send", "poll", "report"]:
    """The stage the message is in (a finished one is being reported)."""
    if message.status is not None:
        return "report"
    return "send" if message.stage == "send" else "poll"


class OutboundWorker(JobWorker[OutboundMessage]):
    name, what, id_field = "outbound", "outbound message", "message_id"
    retry_policy = RetryPolicy(base=CAST_BACKOFF_BASE, cap=CAST_BACKOFF_CAP)

    def __init__(
        self,
        settings: Settings,
        outbox: OutboxRepository,
        cast: CastClient,
        ghl: GHLClient,
        tokens: TokenService,
        pacer: CastPacer,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        *,
        sent_to: RecipientHook,
        accounts: CastAccounts,
        optouts: OptOutService,
        account_info: CastAccountInfo,
        refused: RefusedMessages,
        cipher: TokenCipher,
        receipts: ReceiptReconciler,
    ) -> None:
        super().__init__(settings, outbox, clock)
        self._outbox = outbox
        self._cast = cast
        self._ghl = ghl
        self._tokens = tokens
        self._pacer = pacer
        self._counters = counters
        self._sent_to = sent_to
        self._accounts = accounts  # per-location Cast accounts
        self._optouts = optouts  # the suppression list
        self._account_info = account_info  # key states and the credits metric (issue 22)
        self._refused = refused  # messages no token could report
        self._cipher = cipher  # keeps each message's Cast key
        self._receipts = receipts  # receipts from the keys' logs

    async def _advance(self, message: OutboundMessage) -> float | None:
        """Send, poll, report, as far as each goes now: when to come back, or None when done."""
        if message.stage == "send" and (due_at := await self._send(message)) is not None:
            return due_at
        if message.stage == "poll" and (due_at := await self._poll(message)) is not None:
            return due_at
        return await self._report(message)

    def _deadline(self, message: OutboundMessage, now: float) -> Deadline:
        """Each stage's own: the send, receipts and status deadlines."""
        settings = self._settings
        match _stage_of(message):
            case "send":
                return Deadline(
                    message.send_started_at, settings.send_deadline_seconds, message.send_attempts
                )
            case "poll":
                since = message.accepted_at or now
                return Deadline(since, settings.dlr_deadline_seconds, message.polls)
            case "report":
                since = message.finished_at or now
                return Deadline(since, settings.status_deadline_seconds, message.report_attempts)

    def _give_up(self, message: OutboundMessage, now: float, what: str) -> float | None:
        match _stage_of(message):
            case "send":
                message.finish(
                    now, "failed", "INTERNAL_ERROR", f"Gave up after the send deadline: {what}"
                )
                self._counters.inc("messages_failed", reason="INTERNAL_ERROR")
                return now  # report it to GHL next
            case "poll":
                self._delivered(message, now, "unconfirmed")
                return now
            case "report":
                message.record(now, "report_failed", what)
                self._counters.inc("status_report_failed")
                return None

    def _wait_for_key(self, message: OutboundMessage, reason: str) -> float:
        """Retried by whichever bridge claims it next (one holding the key, or this one once
        restarted with it); never failed as needing a re-install."""
        now = self._clock()
        message.record(now, "waiting_for_key", f"{reason}; retrying in {KEY_WAIT_SECONDS:.0f}s")
        return now + KEY_WAIT_SECONDS

    # Stage 1: Cast ------------------------------------------------------------------------
    async def _send(self, message: OutboundMessage) -> float | None:
        """Send the parts not yet accepted: when to come back (a retry, or the first receipt
        poll), or None once the outcome is known."""
        if message.status is not None:
            return None
        try:
            if await self._refused_before_sending(message):
                return None
        except TokenUnavailable as exc:  # KEY_NOT_HELD: written with a key this bridge lacks
            return self._wait_for_key(message, exc.message)
        try:
            account = await self._sending_account(message)
        except CastError as exc:  # the location's own key is unreadable: fails with its reason
            if exc.code == KEY_NOT_HELD_CODE:  # unless another bridge can read it: wait
                return self._wait_for_key(message, exc.message)
            return self._cast_failed(message, exc)
        channel = self._route(message, account)
        for index, part in enumerate(message.parts, start=1):
            if part.cast_message_id:
                continue
            due_at = await self._send_part(message, account.api_key, channel, index)
            if due_at is not None or message.status is not None:
                return due_at  # to be retried (or paced) then, or finished
        return await self._all_parts_accepted(message, account.api_key)

    async def _refused_before_sending(self, message: OutboundMessage) -> bool:
        """Fail the message if nothing may be sent for it at all (True then): its location is
        not installed, must be re-installed, or the recipient opted out."""
        if not message.synthetic and not await self._tokens.installed(message.location_id):
            self._not_installed(message)
            return True
        reason = await self._tokens.reauthorization_needed(message.location_id)
        if reason is not None:
            self._reauthorization_needed(message, reason)
            return True
        if (optout := await self._opted_out(message)) is not None:
            self._refuse(message, optout)
            return True
        return False

    async def _send_part(
        self, message: OutboundMessage, api_key: str, channel: Channel, index: int
    ) -> float | None:
        """Send the `index`-th part at its key's pace: None once Cast accepted it; else the
        message stops here, finished or due again at the returned time."""
        # one budget per key, both channels; the opt-out list read again just before the slot
        turn = await self._pacer.before_send(
            api_key, lambda: self._opted_out(message), returning=message.deferrals > 0
        )
        if isinstance(turn, ComeBack):  # the key's backlog waits in the outbox
            message.deferrals += 1
            return turn.at
        if turn.checked is not None:  # a STOP while it waited for its slot
            return self._refuse(message, turn.checked)
        message.send_attempts += 1
        part, total = message.parts[index - 1], len(message.parts)
        request = SendRequest(to=message.to or "", message=part.text, sender_id=message.sender_id)
        try:
            result = await self._cast.send_sms(
                api_key,
                request,
                idempotency_key=part.idempotency_key(message.message_id, index, total),
                channel=channel,
            )
        except CastError as exc:
            return await self._cast_refused(message, api_key, turn.rate, exc)
        self._part_accepted(message, index, channel, result)
        return None

    def _part_accepted(
        self, message: OutboundMessage, index: int, channel: Channel, result: SendResult
    ) -> None:
        part, total = message.parts[index - 1], len(message.parts)
        part.cast_message_id, part.cast_parts = result.message_id, result.parts
        part.channel = channel
        self._counters.inc("cast_sends", reason=channel)
        replay = " (replay)" if result.replayed else ""
        message.record(
            self._clock(), "cast_accepted", f"part {index}/{total} {result.message_id}{replay}"
        )

    async def _cast_refused(
        self, message: OutboundMessage, api_key: str, paced_at: float, exc: CastError
    ) -> float | None:
        """Cast answered a part with an error: slow the key down on a 429, list a recipient who
        unsubscribed at Cast, mark a key Cast refuses; then retry or fail the message."""
        if exc.status == 429:
            await self._slowed_down(api_key, paced_at, exc)
        if exc.recipient_unsubscribed:
            return await self._unsubscribed_at_cast(message, message.sender_id, exc)
        if exc.key_state:
            await self._account_info.states.refused(api_key, exc)
        return self._cast_failed(message, exc)

    async def _all_parts_accepted(self, message: OutboundMessage, api_key: str) -> float | None:
        """Cast took every part: poll for receipts next (or, in `accepted` mode, report)."""
        await self._account_info.states.worked(api_key)  # the key works: clear a broken mark
        self._account_info.used(api_key)
        # Replies from this number may come back to this location; a test SMS never counts.
        if not message.synthetic:
            await self._sent_to(message.to, message.location_id, message.sender_id, self._clock())
        now = self._clock()
        if self._settings.delivery_status_mode == "accepted":
            message.delivery = "accepted"
            message.finish(now, "delivered")
            self._counters.inc("messages_delivered", reason="accepted")
            return None
        message.stage, message.accepted_at = "poll", now
        return now + self._settings.dlr_first_poll_seconds

    def _reauthorization_needed(self, message: OutboundMessage, reason: str) -> None:
        message.finish(
            self._clock(),
            "failed",
            "REAUTHORIZATION_NEEDED",
            f"Cast SMS must be re-installed for this location ({reason})",
        )
        self._counters.inc("messages_failed", reason="REAUTHORIZATION_NEEDED")

    def _not_installed(self, message: OutboundMessage) -> None:
        """No installation, no send: on no Cast key, the operator's default included."""
        message.finish(
            self._clock(),
            "failed",
            NOT_INSTALLED,
            "Cast SMS is not installed for this location: nothing was sent. Install the app "
            "for this sub-account.",
        )
        self._counters.inc("messages_failed", reason=NOT_INSTALLED)
        log.warning(
            "outbound message for a location without an installation: not sent",
            extra={"message_id": message.message_id, "location_id": message.location_id},
        )

    async def _opted_out(self, message: OutboundMessage) -> OptOut | None:
        """The opt-out that forbids this message now, if any: asked before the message waits for
        its key's pacing, and again right before each part's slot (the pacer's last check)."""
        return await self._optouts.refusal(message.location_id, message.to)

    def _refuse(self, message: OutboundMessage, optout: OptOut) -> None:
        """The recipient opted out: fail the message (its remaining parts) without asking Cast."""
        reason, total = optout.reason, len(message.parts)
        if message.parts_sent:
            reason += f" ({message.parts_sent} of {total} parts sent)"
        message.finish(self._clock(), "failed", "OPTED_OUT", reason)
        self._counters.inc("messages_failed", reason="OPTED_OUT")
        self._optouts.refused(optout)
        log.info(
            "outbound message not sent: the recipient opted out",
            extra={"message_id": message.message_id, "source": optout.source},
        )

    async def _unsubscribed_at_cast(
        self, message: OutboundMessage, sender_id: str | None, exc: CastError
    ) -> None:
        """Cast refused because the number used its unsubscribe link: list it, set DND."""
        now, phone = self._clock(), to_e164(message.to or "")
        message.record(now, "cast_refused", exc.message)
        optout = await self._optouts.opt_out(
            message.location_id, phone, source="cast_refusal", at=now, sender_id=sender_id
        )
        await self._optouts.request_dnd(
            f"refused:{message.message_id}",
            message.location_id,
            phone,
            opt_out=True,
            note=dnd_note("cast_refusal", now, sender_id=sender_id),
            source="cast_refusal",
            contact_id=message.contact_id,
        )
        self._refuse(message, optout)

    async def _sending_account(self, message: OutboundMessage) -> CastAccount:
        """The account the message was first sent with (a retry, same idempotency keys: Cast's
        idempotency is per account, another key would send a second SMS), else the location's
        current one (the first attempt, or a message stored before its key was kept)."""
        if message.cast_key is None or message.channel is None:
            return await self._accounts.account_for(message.location_id)
        api_key = await self._kept_key(message.cast_key)
        source = "default" if api_key == self._accounts.default.api_key else "location"
        return CastAccount(api_key, message.sender_id, source, message.channel)

    async def _kept_key(self, cast_key: str) -> str:
        try:
            return self._cipher.decrypt(cast_key)
        except UndecryptableError:
            raise await self._accounts.unreadable_key(KEY_LOST) from None

    def _route(self, message: OutboundMessage, account: CastAccount) -> Channel:
        """The message's Cast key, channel and sender ID: chosen at the first attempt, kept
        after (the key encrypted)."""
        if message.cast_key is None:
            message.cast_key = self._cipher.encrypt(account.api_key)
        if message.channel is None:
            message.channel, message.sender_id = account.channel, account.sender_id
            message.record(
                self._clock(),
                "route",
                f"{account.channel} channel ({account.channel_source}), sender "
                f"{account.sender_id or "Cast's default"}, "
                f"{'own' if account.source == 'location' else 'the default'} Cast account",
            )
        return message.channel

    # Stage 2: delivery receipts -------------------------------------------------------------

    async def _status_of(
        self, api_key: str, part: Part, message: OutboundMessage
    ) -> StatusResult | None:
        """`/status` of one part; None (recorded) when Cast could not say."""
        assert part.cast_message_id is not None
        await self._pacer.before_poll()
        try:
            return await self._cast.message_status(
                api_key, part.cast_message_id, part.channel or "sms"
            )
        except CastError as exc:
            if exc.status == 429:
                await self._pacer.read_rate_limited(exc.retry_after)
            message.record(self._clock(), "dlr_unknown", exc.message)
            return None

    async def _poll(self, message: OutboundMessage) -> float | None:
        """Learn how each part fared, from the key's logs or by asking Cast: when to look again,
        or None once the outcome is known."""
        try:
            api_key = await self._receipt_key(message)
        except CastError as exc:  # the account that has its receipts cannot be asked
            if exc.code == KEY_NOT_HELD_CODE:  # under an encryption key another bridge holds
                return self._wait_for_key(message, exc.message)
            message.record(self._clock(), "dlr_unknown", exc.message)
            return self._delivered(message, self._clock(), "unconfirmed")
        message.polls += 1
        lookup = await self._receipts.look_up(api_key, message)
        for part in message.parts:
            if part.dlr is not None or part.cast_message_id is None:
                continue
            result = lookup.settled.get(part.cast_message_id)
            if result is None and part.cast_message_id in lookup.by_status:
                result = await self._status_of(api_key, part, message)
            if result is None:
                continue
            verdict = classify(result)
            if verdict is Receipt.UNKNOWN:
                continue
            part.dlr, part.dlr_status = verdict.value, result.dlr_status or result.status
            if verdict is Receipt.FAILED:
                code = failure_code(result)
                message.finish(self._clock(), "failed", code, failure_reason(result))
                self._counters.inc("messages_failed", reason=code)
                return None
        now = self._clock()
        if all(part.dlr == "delivered" for part in message.parts):
            return self._delivered(message, now, "confirmed")
        if now - (message.accepted_at or now) >= self._settings.dlr_deadline_seconds:
            return self._delivered(message, now, "unconfirmed")
        delay = next_poll_delay(
            message.polls,
            first=self._settings.dlr_first_poll_seconds,
            cap=self._settings.dlr_max_poll_interval_seconds,
        )
        if lookup.waiting:  # the key's next logs round
            delay = min(delay, self._receipts.interval)
        return now + delay

    async def _receipt_key(self, message: OutboundMessage) -> str:
        """The key of the account that accepted the message (its receipts, logs and statuses, are
        there), else the location's current key (a message stored before its key was kept)."""
        if message.cast_key is not None:
            return await self._kept_key(message.cast_key)
        return (await self._accounts.configured(message.location_id)).api_key

    def _delivered(
        self, message: OutboundMessage, now: float, delivery: Literal["confirmed", "unconfirmed"]
    ) -> None:
        message.delivery = delivery
        message.record(now, "carrier_receipt", delivery)
        message.finish(now, "delivered")
        self._counters.inc("messages_delivered", reason=delivery)

    async def _slowed_down(self, api_key: str, paced_at: float, exc: CastError) -> None:
        rate = await self._pacer.rate_limited(api_key, paced_at, exc.retry_after)
        if rate < paced_at:
            log.warning(
                "Cast answered 429: this key now sends at %.1f msg/s (was %.1f)", rate, paced_at
            )

    def _cast_failed(self, message: OutboundMessage, exc: CastError) -> float | None:
        now = self._clock()
        wait = exc.retry_after or None  # 0: no wait asked, the backoff applies
        due_at = self.retry_policy.retry_at(
            self._deadline(message, now),
            now,
            retryable=exc.retryable,
            rate_limited=exc.status == 429,  # our pacing's miss, not Cast's: waited out
            wait=wait,
        )
        if due_at is not None:
            message.record(now, "cast_retry", f"{exc.message}; retrying in {due_at - now:.1f}s")
            self._counters.inc("cast_retries")
            return due_at
        total = len(message.parts)
        detail = exc.reason
        if total > 1:
            detail += f" ({message.parts_sent} of {total} parts sent)"
        if exc.retryable:
            detail = f"Gave up after {self._settings.send_deadline_seconds:.0f}s: {detail}"
        message.finish(now, "failed", exc.code or "CAST_UNAVAILABLE", detail)
        self._counters.inc("messages_failed", reason=message.error_code)
        level = logging.ERROR if exc.operator_problem else logging.WARNING
        log.log(
            level,
            "outbound message failed at Cast"
            + (" (operator action needed)" if exc.operator_problem else ""),
            extra={"message_id": message.message_id, "status": exc.status, "code": exc.code},
        )
        return None

    # Stage 3: GHL -------------------------------------------------------------------------
    def _status_update(self, message: OutboundMessage) -> StatusUpdate:
        if message.status == "delivered":
            return StatusUpdate(status="delivered")
        return StatusUpdate(
            status="failed",
            error=StatusError(
                code=message.error_code or "FAILED", message=message.error_message or "failed"
            ),
        )

    async def _put_status(self, message: OutboundMessage) -> None:
        update = self._status_update(message)
        location_id = message.location_id
        if message.error_code == NOT_INSTALLED:  # no token of its own: its agency's, if any
            token = await self._tokens.reporting_token(location_id)
            await self._ghl.update_message_status(
                token, message.message_id, update, location_id=location_id
            )
            return
        await self._tokens.with_location_token(
            location_id,
            lambda token: self._ghl.update_message_status(
                token, message.message_id, update, location_id=location_id
            ),
            lambda: message.spend_token_refresh(self._clock()),
        )

    async def _report(self, message: OutboundMessage) -> float | None:
        if message.synthetic:  # a settings-page test SMS: GHL has no message to update
            return None
        message.report_attempts += 1
        try:
            await self._put_status(message)
        except TokenUnavailable as exc:
            if exc.code == NOT_INSTALLED:
                return await self._unreportable(message, exc)
            return self._report_failed(message, exc)
        except GHLError as exc:
            return self._report_failed(message, exc)
        message.reported = True
        message.record(self._clock(), "reported", message.status)
        self._counters.inc("status_reported", reason=message.status)
        return None

    async def _unreportable(self, message: OutboundMessage, exc: TokenUnavailable) -> None:
        """No token of the location or of its agency can tell GHL: refused, listed for the
        operator (`cast-ghl refused`, GET /api/admin/refused-messages)."""
        now = self._clock()
        message.record(now, "refused", exc.message)
        self._counters.inc("status_report_refused")
        log.error(
            "message refused: its location has no installation and no token can report it",
            extra={"message_id": message.message_id, "location_id": message.location_id},
        )
        await self._refused.record(
            RefusedMessage(
                message_id=message.message_id,
                location_id=message.location_id,
                received_at=message.received_at,
                refused_at=now,
                reason=exc.message,
            )
        )

    def _report_failed(
        self, message: OutboundMessage, exc: GHLError | TokenUnavailable
    ) -> float | None:
        now = self._clock()
        permanent = (
            not exc.retryable and not exc.unauthorized if isinstance(exc, GHLError) else exc.final
        )
        due_at = GHL_RETRY.retry_at(
            self._deadline(message, now),
            now,
            retryable=not permanent,
            rate_limited=isinstance(exc, GHLError) and exc.rate_limited,  # waited out, never fatal
        )
        if due_at is not None:
            message.record(now, "report_retry", f"{exc.message}; retrying in {due_at - now:.1f}s")
            self._counters.inc("status_report_retries")
            return due_at
        message.record(now, "report_failed", exc.message)
        self._counters.inc("status_report_failed")
        log.error(
            "could not report the status to GHL",
            extra={"message_id": message.message_id, "reason": exc.message},
        )
        return None
