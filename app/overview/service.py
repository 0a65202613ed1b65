"""The agency overview: every sub-account of a company at a glance (installed or needing a
re-install, sender and channel, own key or the default, sent/delivered/failed over 24 h and
7 d, opted-out count, credits of its own key), for the admin API, the CLI and the agency page."""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.cast.account import CastAccountInfo
from app.cast.accounts import CastAccounts, account_from
from app.cast.client import CastError
from app.config import Settings
from app.ghl.client import GHLClient, GHLError
from app.kit.ttl_cache import TTLCache
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.repository import InstallationRepository
from app.oauth.tokens import TokenService, TokenUnavailable
from app.optouts.service import OptOutService
from app.outbound.repository import OutboxRepository
from app.overview.repository import LocationNames
from app.overview.schemas import LocationOverview, LocationsOverview, Window

log = logging.getLogger(__name__)

DAY = 86_400.0
COUNT_CAP = 5_000  # messages read per sub-account for the 7-day figures; more: `capped`
# GHL is asked for an agency's sub-accounts at most this often, however often the overview is
# viewed (the agency page is open to every admin of the agency; GHL's calls are not free).
LISTING_SECONDS = 60.0


@dataclass(frozen=True)
class _Listing:
    """GHL's answer for one agency: its installed sub-accounts, or why it could not say."""

    location_ids: list[str]
    problem: str | None = None


@dataclass
class _Known:
    """What the installations say about one location."""

    company_id: str | None = None
    installed: bool = False
    via_agency: bool = False
    needs_reinstall: bool = False
    reason: str | None = None
    sources: set[str] = field(default_factory=set)


class OverviewService:
    def __init__(
        self,
        settings: Settings,
        installations: InstallationRepository,
        location_settings: LocationSettingsRepository,
        accounts: CastAccounts,
        outbox: OutboxRepository,
        optouts: OptOutService,
        names: LocationNames,
        tokens: TokenService,
        ghl: GHLClient,
        account_info: CastAccountInfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._installations = installations
        self._location_settings = location_settings
        self._accounts = accounts
        self._outbox = outbox
        self._optouts = optouts
        self._names = names
        self._tokens = tokens
        self._ghl = ghl
        self._account_info = account_info
        self._clock = clock
        self._listings: TTLCache[str, _Listing] = TTLCache(LISTING_SECONDS)

    async def names(self) -> dict[str, str]:
        """Every sub-account name known (as GHL last gave them), by location id."""
        return await self._names.all()

    async def overview(self, company_id: str | None = None) -> LocationsOverview:
        """Every known sub-account (of `company_id` only, when given), by name then id. The
        names are asked of GHL for each agency installation (kept for the other views)."""
        known = await self._known_locations()
        problems = await self._refresh_names(known, company_id)
        names = await self._names.all()
        wanted = {
            location_id: facts
            for location_id, facts in known.items()
            if company_id is None or facts.company_id == company_id
        }
        rows = await asyncio.gather(
            *(
                self._row(location_id, facts, names.get(location_id))
                for location_id, facts in wanted.items()
            )
        )
        rows = sorted(rows, key=lambda row: ((row.name or "").casefold(), row.location_id))
        return LocationsOverview(locations=list(rows), problems=problems)

    async def _known_locations(self) -> dict[str, _Known]:
        known: dict[str, _Known] = {}
        for summary in await self._installations.summaries(limit=100_000):
            if summary.kind != "location" or summary.location_id is None:
                continue
            facts = known.setdefault(summary.location_id, _Known())
            facts.company_id = summary.company_id or facts.company_id
            facts.installed = True
            facts.via_agency = summary.source == "company"
            facts.needs_reinstall = summary.needs_reauth
            facts.reason = summary.reauth_reason if summary.needs_reauth else None
        for stored in await self._location_settings.all_location_ids():
            known.setdefault(stored, _Known())
        for location_id, facts in known.items():
            if facts.company_id is None:
                facts.company_id = await self._installations.company_of(location_id)
        return known

    async def _refresh_names(self, known: dict[str, _Known], company_id: str | None) -> list[str]:
        """Ask GHL for each agency installation's sub-accounts (names, and installed ones the
        bridge has no token for yet); what failed is returned as problems."""
        problems = []
        for summary in await self._installations.summaries(limit=100_000):
            company = summary.company_id
            if summary.kind != "company" or company is None:
                continue
            if company_id is not None and company != company_id:
                continue
            listing = self._listings.get(company)
            if listing is None:
                listing = await self._listing(company)
                self._listings.put(company, listing)
            if listing.problem is not None:
                problems.append(listing.problem)
                continue
            for location_id in listing.location_ids:
                facts = known.setdefault(location_id, _Known())
                facts.company_id = facts.company_id or company
                if not facts.installed:
                    facts.installed = facts.via_agency = not summary.needs_reauth
                    facts.needs_reinstall = summary.needs_reauth
                    facts.reason = summary.reauth_reason if summary.needs_reauth else None
        return problems

    async def _listing(self, company: str) -> _Listing:
        """Ask GHL for the agency's installed sub-accounts (their names are remembered)."""
        try:
            token = await self._tokens.company_token(company)
            found = await self._ghl.installed_location_names(token, company, self._settings.app_id)
        except (GHLError, TokenUnavailable) as exc:
            log.warning(
                "could not read the agency's sub-account names",
                extra={"company_id": company, "reason": str(exc)},
            )
            return _Listing([], f"GHL's list of {company}'s sub-accounts: {exc}")
        await self._names.remember(company, found, self._clock())
        return _Listing(list(found))

    async def _row(self, location_id: str, facts: _Known, name: str | None) -> LocationOverview:
        now = self._clock()
        stored = await self._location_settings.get(location_id, strict=False)
        account = await self._accounts.with_channel(account_from(stored, self._accounts.default))
        own_key = stored.cast_api_key if stored and stored.enabled else None
        messages = await self._outbox.recent(location_id, since=now - 7 * DAY, limit=COUNT_CAP)
        capped = len(messages) >= COUNT_CAP
        return LocationOverview(
            location_id=location_id,
            name=name,
            company_id=facts.company_id,
            installed=facts.installed,
            via_agency=facts.via_agency,
            needs_reinstall=facts.needs_reinstall,
            reinstall_reason=facts.reason,
            sender_id=account.sender_id,
            channel=account.channel,
            own_key=own_key is not None,
            last_24h=Window.of(messages, now - DAY, capped=False),
            last_7d=Window.of(messages, now - 7 * DAY, capped=capped),
            opted_out=await self._optouts.count(location_id),
            credits=await self._credits(own_key),
            low_credit_threshold=self._threshold(stored) if own_key else None,
        )

    def _threshold(self, stored: LocationSettings | None) -> int:
        own = stored.low_credit_threshold if stored else None
        return own if own is not None else self._settings.low_credit_threshold

    async def _credits(self, own_key: str | None) -> int | None:
        """Its own key's balance (cached as the page caches it); None without one or when Cast
        cannot say."""
        if own_key is None:
            return None
        try:
            return await self._account_info.credits(own_key)
        except (CastError, TimeoutError):
            return None
