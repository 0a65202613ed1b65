"""The settings page's logic: SSO sign-in, what the page shows, saving, the test SMS."""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from app.cast.account import CastAccountInfo
from app.cast.accounts import CastAccount, CastAccounts, SenderCheck, account_from, is_assigned
from app.config import Settings
from app.kit.errors import ApiError
from app.kit.logs import mask_phone
from app.locations.chart import usage_chart, usage_days
from app.locations.pages import frame_origins
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import (
    AccountPanel,
    Connection,
    LocationSettings,
    SettingsForm,
    SettingsView,
    SmsTestForm,
    Totals,
    mask_key,
)
from app.locations.sso import Session, SessionSigner, SsoError, SsoUser, decrypt_user
from app.messages.schemas import MessagePage
from app.messages.service import MessageLog, message_query
from app.oauth.repository import InstallationRepository, location_key
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository
from app.outbound.schemas import OutboundMessage
from app.outbound.service import OutboundService
from app.overview.repository import LocationNames
from app.phone import InvalidPhoneNumber, to_cast_local

log = logging.getLogger(__name__)


DAY = 86_400.0
LOG_ROWS = 25  # messages per page of the page's message log
LOG_FILTERS = ("direction", "status", "phone", "q", "since", "until", "cursor")
TOTALS_CAP = 2_000  # messages read to count the last 7 days; more shows as "2000+"
TEST_SMS_WINDOW_SECONDS = 600.0
TEST_SMS_PER_WINDOW = 5
ADMIN_ROLE = "admin"  # GHL's SSO `role`: "admin" or "user"
TEST_SMS_TEXT = "Cast SMS test: this GoHighLevel sub-account can send SMS through Cast."
PAGE_VIEW_WINDOW_SECONDS = 10.0
PAGE_VIEWS_PER_WINDOW = 20  # per location, across every user and process


def _totals(messages: list[OutboundMessage], since: float, capped: bool) -> Totals:
    counts = {"delivered": 0, "failed": 0, "pending": 0}
    for message in messages:
        if message.received_at >= since:
            counts[message.status if message.status in counts else "pending"] += 1
    return Totals(**counts, capped=capped)


def _log_fields(location_id: str, form: Mapping[str, str]) -> dict[str, str]:
    """The page's search form (fields `log_*`) as message-log filters of one location."""
    fields = {name: form.get(f"log_{name}", "") for name in LOG_FILTERS}
    return {**fields, "location_id": location_id, "limit": str(LOG_ROWS)}


async def check_settings(
    accounts: CastAccounts, wanted: LocationSettings, *, key_changed: bool = False
) -> tuple[LocationSettings, SenderCheck]:
    """The settings as they will be saved, the sender ID checked with Cast first (see
    `CastAccounts.check_sender`; a new own key Cast refuses is refused) and spelled as Cast
    lists it. Unchecked, it is used to send but owns nothing for routing until Cast lists it."""
    own_key = wanted.cast_api_key is not None
    check = await accounts.check_sender(
        wanted.cast_api_key or accounts.default.api_key,
        wanted.sender_id,
        wanted.channel,
        own_key=own_key,
        check_key=key_changed,
    )
    checked = check.checked or check.sender_id is None
    update = {"sender_id": check.sender_id, "sender_checked": checked}
    return wanted.model_copy(update=update), check


async def store_settings(
    repository: LocationSettingsRepository, accounts: CastAccounts, checked: LocationSettings
) -> None:
    await repository.put(checked)
    accounts.invalidate(checked.location_id)


def require_assigned(settings: LocationSettings) -> None:
    """Without its own key a location sends only as a sender the operator assigned it."""
    sender_id = settings.sender_id
    if settings.cast_api_key or sender_id is None or is_assigned(settings, sender_id):
        return
    choices = ", ".join(settings.assigned_senders) or "none: ask the app's operator for one"
    raise ApiError(
        422,
        "sender_id_not_assigned",
        f"{sender_id} is not assigned to this sub-account on the app's Cast account (assigned: "
        f"{choices}); to send as another sender ID, enter this sub-account's own Cast API key",
        "sender_id",
    )


class LocationService:
    def __init__(
        self,
        settings: Settings,
        repository: LocationSettingsRepository,
        accounts: CastAccounts,
        installations: InstallationRepository,
        outbox: OutboxRepository,
        outbound: OutboundService,
        optouts: OptOutService,
        clock: Callable[[], float] = time.time,
        *,
        account_info: CastAccountInfo,
        message_log: MessageLog,
        names: LocationNames,
    ) -> None:
        self._message_log = message_log
        self._names = names
        self._account_info = account_info  # the Cast account panel
        self._settings = settings
        self._repo = repository
        self._accounts = accounts
        self._installations = installations
        self._outbox = outbox  # read: the page's recent messages and totals
        self._outbound = outbound  # the test SMS
        self._optouts = optouts
        self._clock = clock
        self.frame_origins = frame_origins(settings.settings_frame_origins)
        key = settings.ghl_app_sso_key
        self._signer = (
            SessionSigner(key.get_secret_value(), settings.settings_session_seconds)
            if key is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        """False until GHL_APP_SSO_KEY is set: nobody can be identified without it."""
        return self._signer is not None

    def _require_signer(self) -> SessionSigner:
        if self._signer is None:
            raise ApiError(
                503, "sso_not_configured", "The settings page needs GHL_APP_SSO_KEY to be set"
            )
        return self._signer

    # Sign-in ------------------------------------------------------------------------------
    async def sign_in(self, payload: str | None) -> tuple[Session, str]:
        """Decrypt GHL's user context; a session for its activeLocation and the token.

        Fails closed: the location must be installed, and the user's companyId must be the
        installation's agency."""
        signer = self._require_signer()
        user = self._user(payload)
        # Key on activeLocation (GHL's own sub-account payloads carry type "agency"): GHL only
        # opens the page inside a sub-account for its users and for agency users with access.
        location_id = user.active_location
        if not location_id:
            raise ApiError(
                403,
                "no_location",
                "Open Cast SMS settings from inside a sub-account (no active location)",
            )
        if not user.company_id:
            log.warning(
                "settings page refused: the user context names no agency",
                extra={"location_id": location_id, "user_id": user.user_id},
            )
            raise ApiError(403, "no_company", "The GHL user context names no agency (companyId)")
        now = self._clock()
        session = Session(
            location_id=location_id,
            user_id=user.user_id,
            user_name=user.user_name or user.email or user.user_id,
            expires_at=now + signer.ttl_seconds,
            company_id=user.company_id,
            admin=(user.role or "").lower() == ADMIN_ROLE,
        )
        await self._require_installed(session)
        log.info(
            "settings page signed in",
            extra={"location_id": location_id, "user_id": user.user_id, "role": user.role},
        )
        return session, signer.issue(session)

    def _user(self, payload: str | None) -> SsoUser:
        """GHL's user context, decrypted with the Shared Secret (401 when it cannot be)."""
        if not payload:
            raise ApiError(401, "sso_required", "No GHL user context was sent", "payload")
        try:
            return decrypt_user(payload, self._require_key())
        except SsoError as exc:
            raise ApiError(
                401, "invalid_sso", "The GHL user context could not be verified", "payload"
            ) from exc

    def agency_admin(self, payload: str | None) -> SsoUser:
        """The agency page's user: an admin of an agency (`type: agency`, `role: admin`) with
        its companyId; the page shows that company's sub-accounts only."""
        self._require_signer()
        user = self._user(payload)
        if (user.type or "").lower() != "agency" or not user.company_id:
            raise ApiError(
                403, "not_agency", "Open the agency overview from the agency's menu in GHL"
            )
        if (user.role or "").lower() != ADMIN_ROLE:
            raise ApiError(403, "not_agency_admin", "Only an agency admin sees the overview")
        log.info(
            "agency overview signed in",
            extra={"company_id": user.company_id, "user_id": user.user_id},
        )
        return user

    def _require_key(self) -> str:
        assert self._settings.ghl_app_sso_key is not None
        return self._settings.ghl_app_sso_key.get_secret_value()

    async def session(self, token: str | None) -> Session:
        """The session a form carries, for a location that is still installed for its agency."""
        signer = self._require_signer()
        try:
            session = signer.verify(token or "", self._clock())
        except SsoError as exc:
            raise ApiError(
                401,
                "session_expired" if str(exc) == "session expired" else "invalid_session",
                "Your session has expired or is invalid: reload the page",
                "session",
            ) from exc
        await self._require_installed(session)
        return session

    async def _require_installed(self, session: Session) -> None:
        """403 unless the location is installed and belongs to the session user's agency."""
        location_id = session.location_id
        found = await self._installations.get(location_key(location_id))
        if found is None:
            raise ApiError(
                403,
                "not_installed",
                "Cast SMS is not installed for this sub-account: install it from the "
                "Marketplace, then open this page again",
            )
        owner = found[0].company_id or await self._installations.company_of(location_id)
        if owner != session.company_id:
            log.warning(
                "settings page refused: user of another agency",
                extra={"location_id": location_id, "user_id": session.user_id},
            )
            raise ApiError(403, "wrong_agency", "This user does not belong to this location")

    @staticmethod
    def _require_admin(session: Session) -> None:
        if not session.admin:
            raise ApiError(
                403,
                "admin_required",
                "Only an admin of this sub-account can change these settings or send a test SMS",
            )

    # The page -----------------------------------------------------------------------------
    async def _connection(self, location_id: str) -> Connection:
        found = await self._installations.get(location_key(location_id))
        if found is None:
            return Connection("not_installed", "Cast SMS is not installed for this sub-account")
        installation = found[0]
        via_agency = getattr(installation, "source", "oauth") == "company"
        if installation.needs_reauth:
            return Connection(
                "needs_reauth",
                installation.reauth_reason or "GHL refused the token refresh",
                via_agency,
            )
        return Connection("connected", None, via_agency)

    async def view(self, session: Session) -> SettingsView:
        location_id = session.location_id
        stored = await self._repo.get(location_id, strict=False)
        account = account_from(stored, self._accounts.default)
        if stored and stored.key_unreadable and stored.enabled:  # the worker refuses to send
            account = CastAccount("", stored.sender_id, "location")
        else:
            account = await self._accounts.with_channel(account)
        own_key = account.api_key if stored and account.api_key == stored.cast_api_key else ""
        now = self._clock()
        messages, connection, panel = await asyncio.gather(
            self._outbox.recent(location_id, since=now - 7 * DAY, limit=TOTALS_CAP),
            self._connection(location_id),
            self._panel(own_key, stored),
        )
        assigned = stored.assigned_senders if stored else []
        own_senders = [s.sender_id for s in panel.senders or []] if panel else []
        capped = len(messages) >= TOTALS_CAP
        return SettingsView(
            location_id=location_id,
            user_name=session.user_name,
            can_edit=session.admin,
            connection=connection,
            sender_id=stored.sender_id if stored else None,
            masked_key=mask_key(stored.cast_api_key) if stored else None,
            key_unreadable=stored.key_unreadable if stored else False,
            enabled=stored.enabled if stored else True,
            uses_own_account=account.source == "location",
            effective_sender_id=account.sender_id,
            channel=account.channel,
            channel_source=account.channel_source,
            channel_setting=stored.channel if stored else None,
            updated_at=stored.updated_at if stored else None,
            cast=panel,
            sender_choices=own_senders if own_key else assigned,
            assigned_senders=assigned,
            last_24h=_totals(messages, now - DAY, capped=False),
            last_7d=_totals(messages, now - 7 * DAY, capped=capped),
            opted_out=await self._optouts.count(location_id),
            location_name=await self._names.get(location_id),
        )

    async def message_log(self, session: Session, form: Mapping[str, str]) -> MessagePage:
        """A page of the session's location's message log (never another location's), searched
        with the form's `log_*` fields; a bad field is a 400 naming the form field."""
        try:
            query = message_query(_log_fields(session.location_id, form))
        except ApiError as exc:
            exc.field = f"log_{exc.field}" if exc.field else None
            exc.message = exc.message.replace("until: ", "To: ").replace("since: ", "From: ")
            raise
        return await self._message_log.page(query)

    async def count_view(self, session: Session) -> None:
        """A page view of the location: 429 past PAGE_VIEWS_PER_WINDOW in the window, so no
        tenant can make the bridge read Cast (or the store) as fast as it reloads."""
        if not await self._repo.take_page_view(
            session.location_id,
            now=self._clock(),
            window=PAGE_VIEW_WINDOW_SECONDS,
            limit=PAGE_VIEWS_PER_WINDOW,
        ):
            raise ApiError(
                429,
                "too_many_views",
                f"This page was opened more than {PAGE_VIEWS_PER_WINDOW} times in "
                f"{PAGE_VIEW_WINDOW_SECONDS:.0f} seconds: wait a moment, then reload",
            )

    async def _panel(self, api_key: str, stored: LocationSettings | None) -> AccountPanel | None:
        """The Cast account panel, for the location's own key only (`api_key`, "" without)."""
        if not api_key:
            return None
        snapshot = await self._account_info.snapshot(api_key)
        own = stored.low_credit_threshold if stored else None
        usage = snapshot.usage
        chart = (
            usage_chart(usage_days(usage.daily, datetime.fromtimestamp(self._clock(), UTC).date()))
            if usage is not None
            else None
        )
        return AccountPanel(
            credits=snapshot.credits,
            billing_type=snapshot.profile.billing_type if snapshot.profile else None,
            threshold=own if own is not None else self._settings.low_credit_threshold,
            threshold_is_own=own is not None,
            senders=snapshot.senders,
            usage=usage,
            chart=chart,
            state=snapshot.state,
            problems=snapshot.problems,
        )

    async def save(
        self, session: Session, form: SettingsForm
    ) -> tuple[LocationSettings, SenderCheck]:
        self._require_admin(session)
        stored = await self._repo.get(session.location_id, strict=False)
        if stored and stored.key_unreadable and not (form.api_key or form.remove_api_key):
            raise ApiError(
                422,
                "key_unreadable",
                "Cast API key: the stored key cannot be decrypted (was TOKEN_ENCRYPTION_KEY "
                "changed?): enter it again or remove it",
                "api_key",
            )
        api_key = stored.cast_api_key if stored else None
        if form.remove_api_key:
            api_key = None
        if form.api_key:
            api_key = form.api_key
        wanted = LocationSettings(
            location_id=session.location_id,
            cast_api_key=api_key,
            sender_id=form.sender_id,
            channel=form.channel,
            low_credit_threshold=form.low_credit_threshold,
            enabled=form.enabled,
            assigned_senders=stored.assigned_senders if stored else [],
            updated_at=self._clock(),
            updated_by=session.user_id,
        )
        require_assigned(wanted)
        updated, check = await check_settings(
            self._accounts, wanted, key_changed=bool(form.api_key)
        )
        await store_settings(self._repo, self._accounts, updated)
        log.info(
            "location settings saved",
            extra={
                "location_id": session.location_id,
                "user_id": session.user_id,
                "own_key": api_key is not None,
                "key_changed": bool(form.api_key) or form.remove_api_key,
                "sender_id": check.sender_id,
                "channel": check.channel,
                "sender_checked": check.checked,
                "enabled": form.enabled,
            },
        )
        return updated, check

    async def send_test(self, session: Session, form: SmsTestForm) -> bool:
        """Queue a test SMS through the outbound service; False when this form was already
        submitted."""
        self._require_admin(session)
        try:
            to_cast_local(form.phone)
        except InvalidPhoneNumber as exc:
            raise ApiError(422, "invalid_phone", f"phone: {exc}", "phone") from exc
        now = self._clock()
        message_id = f"settings-test:{session.location_id}:{form.nonce}"
        if await self._outbox.get(message_id) is not None:
            return False
        if not await self._repo.take_test_sms(
            session.location_id, now=now, window=TEST_SMS_WINDOW_SECONDS, limit=TEST_SMS_PER_WINDOW
        ):
            raise ApiError(
                429,
                "too_many_tests",
                f"At most {TEST_SMS_PER_WINDOW} test messages per "
                f"{TEST_SMS_WINDOW_SECONDS / 60:.0f} minutes: try again later",
                "phone",
            )
        if not await self._outbound.queue_test_sms(
            message_id, session.location_id, form.phone, TEST_SMS_TEXT, now
        ):
            return False
        log.info(
            "test SMS queued",
            extra={
                "location_id": session.location_id,
                "user_id": session.user_id,
                "to": mask_phone(form.phone),
                "message_id": message_id,
            },
        )
        return True
