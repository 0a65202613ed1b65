"""The inbox worker: routes each received SMS to a location, finds or creates the contact and
its conversation (`app/ghl/conversations.py`), and adds the message to that conversation.

Same leased queue as the outbox (`app/worker.py`): a message is claimed with a lease, and every
outcome is written back to its document before the lease is released. GHL 429/5xx/timeouts are
retried with backoff until INBOUND_DEADLINE_SECONDS; a 401 refreshes the location token once.
A message no location can be chosen for is finished as `unroutable` and kept for re-routing.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.ghl.client import GHLClient, GHLError, retry_verdict
from app.ghl.conversations import ConversationDirectory
from app.ghl.schemas import InboundMessage
from app.inbound.repository import InboxRepository
from app.inbound.routing import InboundRouter, Route
from app.inbound.schemas import InboundSMS
from app.inbound.service import mask_receiver
from app.kit.logs import mask_phone
from app.metrics import Counters
from app.oauth.tokens import TokenService, TokenUnavailable
from app.optouts.schemas import dnd_note
from app.optouts.service import OptOutService
from app.worker import Deadline, JobWorker, RetryPolicy

log = logging.getLogger(__name__)

GHL_BACKOFF_BASE, GHL_BACKOFF_CAP = 2.0, 60.0
# What GHL may answer an inbound add naming a conversation it no longer has (deleted).
STALE_CONVERSATION = {400, 404, 422}


class InboundWorker(JobWorker[InboundSMS]):
    name, what, id_field = "inbound", "inbound SMS", "inbound_id"
    retry_policy = RetryPolicy(base=GHL_BACKOFF_BASE, cap=GHL_BACKOFF_CAP)

    def __init__(
        self,
        settings: Settings,
        inbox: InboxRepository,
        router: InboundRouter,
        ghl: GHLClient,
        tokens: TokenService,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        *,
        optouts: OptOutService,
        conversations: ConversationDirectory,
    ) -> None:
        super().__init__(settings, inbox, clock)
        self._inbox = inbox
        self._router = router
        self._ghl = ghl
        self._conversations = conversations
        self._tokens = tokens
        self._counters = counters
        self._optouts = optouts  # STOP/START keywords

    def _deadline(self, message: InboundSMS, now: float) -> Deadline:
        return Deadline(
            message.started_at, self._settings.inbound_deadline_seconds, message.attempts
        )

    def _give_up(self, message: InboundSMS, now: float, what: str) -> float | None:
        deadline = self._settings.inbound_deadline_seconds
        message.finish(now, "failed", "INTERNAL_ERROR", f"Gave up after {deadline:.0f}s: {what}")
        return None

    async def _advance(self, message: InboundSMS) -> float | None:
        """Route and deliver: when to retry, or None once the outcome is final."""
        if message.location_id is None and not await self._route(message):
            return None
        await self._record_consent(message)
        if not message.in_ghl:
            message.attempts += 1
            try:
                await self._add_to_ghl(message)
            except (GHLError, TokenUnavailable) as exc:
                return self._failed(message, exc)
            message.in_ghl = True
            message.record(
                self._clock(),
                "ghl_accepted",
                f"{message.ghl_message_id} in {message.conversation_id}",
            )
        await self._request_dnd(message)
        now = self._clock()
        message.finish(now, "delivered")
        self._counters.inc("inbound_delivered")
        log.info(
            "inbound SMS added to GHL",
            extra={
                "inbound_id": message.id,
                "location_id": message.location_id,
                "contact_id": message.contact_id,
                "ghl_message_id": message.ghl_message_id,
                "attempts": message.attempts,
            },
        )
        return None

    async def _record_consent(self, message: InboundSMS) -> None:
        """STOP/START: update the location's suppression list (once, before GHL is asked)."""
        if message.consent_recorded:
            return
        assert message.location_id is not None
        keyword = self._optouts.keyword(message.text)
        if keyword is not None:
            message.keyword, message.opt_out = keyword.word, keyword.opt_out
            if keyword.opt_out:
                await self._optouts.opt_out(
                    message.location_id,
                    message.phone,
                    source="keyword",
                    at=message.received_timestamp,
                    keyword=keyword.word,
                )
            else:
                await self._optouts.opt_in(message.location_id, message.phone, keyword=keyword.word)
            message.record(self._clock(), "opt_out" if keyword.opt_out else "opt_in", keyword.word)
        message.consent_recorded = True

    async def _request_dnd(self, message: InboundSMS) -> None:
        """STOP/START: queue the contact's SMS DND update (once per message)."""
        if message.keyword is None or message.dnd_requested:
            return
        assert message.location_id is not None and message.opt_out is not None
        note = dnd_note("keyword", message.received_timestamp, keyword=message.keyword)
        await self._optouts.request_dnd(
            f"inbound:{message.id}",
            message.location_id,
            message.phone,
            opt_out=message.opt_out,
            note=note,
            source="keyword",
            contact_id=message.contact_id,
        )
        message.dnd_requested = True
        message.record(self._clock(), "dnd_requested", "set" if message.opt_out else "clear")

    async def _route(self, message: InboundSMS) -> bool:
        now = self._clock()
        route = await self._router.route(message.phone, message.to, message.accepted_at)
        if isinstance(route, Route):
            message.assign(now, route.location_id, route.routed_by)
            return True
        message.finish(now, "unroutable", "UNROUTABLE", route.reason)
        self._counters.inc("inbound_unroutable")
        log.warning(
            "inbound SMS is unroutable; kept for re-routing",
            extra={
                "inbound_id": message.id,
                "from": mask_phone(message.phone),
                "to": mask_receiver(message.to),
            },
        )
        return False

    async def _add_to_ghl(self, message: InboundSMS) -> None:
        location_id = message.location_id
        assert location_id is not None
        await self._tokens.with_location_token(
            location_id,
            lambda token: self._post(token, message),
            lambda: message.spend_token_refresh(self._clock()),
        )

    async def _post(self, token: str, message: InboundSMS) -> None:
        location_id = message.location_id
        assert location_id is not None
        if message.contact_id is None:
            contact = await self._ghl.find_contact_by_phone(token, location_id, message.phone)
            created = contact is None
            if contact is None:
                contact = await self._ghl.upsert_contact(token, location_id, message.phone)
            message.contact_id, message.contact_created = str(contact["id"]), created
            message.record(
                self._clock(), "contact", f"{contact['id']} ({'created' if created else 'found'})"
            )
        contact_id = message.contact_id
        assert contact_id is not None
        was_cached = self._conversations.cached(location_id, contact_id) is not None
        try:
            answer = await self._add_message(token, message, location_id, contact_id)
        except GHLError as exc:
            if exc.status not in STALE_CONVERSATION:
                raise
            self._conversations.forget(location_id, contact_id)
            if not was_cached:
                raise
            answer = await self._add_message(token, message, location_id, contact_id)
        message.conversation_id = answer.get("conversationId")
        message.ghl_message_id = answer.get("messageId")

    async def _add_message(
        self, token: str, message: InboundSMS, location_id: str, contact_id: str
    ) -> dict[str, Any]:
        """Add the SMS to the contact's conversation (looked up, or from the cache)."""
        conversation_id = await self._conversations.conversation_id(token, location_id, contact_id)
        return await self._ghl.add_inbound_message(
            token,
            InboundMessage(
                message=message.text,
                conversation_id=conversation_id,
                contact_id=contact_id,
                conversation_provider_id=self._settings.ghl_conversation_provider_id,
                alt_id=message.id,
                date=message.date,
            ),
            location_id=location_id,
        )

    def _failed(self, message: InboundSMS, exc: GHLError | TokenUnavailable) -> float | None:
        now = self._clock()
        retryable, rate_limited = retry_verdict(exc)
        due_at = self.retry_policy.retry_at(
            self._deadline(message, now), now, retryable=retryable, rate_limited=rate_limited
        )
        if due_at is not None:
            message.record(now, "ghl_retry", f"{exc.message}; retrying in {due_at - now:.1f}s")
            self._counters.inc("inbound_retries")
            return due_at
        if isinstance(exc, TokenUnavailable):
            code, detail = exc.code, exc.message
        else:
            code = f"GHL_{exc.status}" if exc.status else "GHL_UNAVAILABLE"
            detail = f"{exc.message}: {exc.body}" if exc.body else exc.message
        if retryable:
            detail = f"Gave up after {self._settings.inbound_deadline_seconds:.0f}s: {detail}"
        message.finish(now, "failed", code, detail)
        self._counters.inc("inbound_failed")
        log.error(
            "inbound SMS could not be added to GHL; kept for re-delivery",
            extra={
                "inbound_id": message.id,
                "location_id": message.location_id,
                "code": code,
                "reason": exc.message,
            },
        )
        return None
