"""Which Cast key and sender ID a location sends with (its own account, or the default).

The outbound worker, the Cast opt-out sync, the settings page and the operators all ask this;
the location's choice itself is stored by app/locations (`LocationSettingsRepository`), which
this module knows only through the two protocols below, so sending never imports the settings
page's domain.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from app.cast.client import CastError
from app.cast.schemas import Channel, ChannelSource, SenderId
from app.cast.senders import SenderDirectory, find_sender, sender_key
from app.config import Settings
from app.kit.errors import ApiError
from app.kit.ttl_cache import TTLCache

ACCOUNT_CACHE_SECONDS = 5.0
KEY_NOT_HELD_CODE = "ENCRYPTION_KEY_NOT_HELD"
KEY_NOT_HELD_REASON = (
    "The Cast key was saved under a TOKEN_ENCRYPTION_KEY this bridge lacks and another bridge "
    "holds: restart this one with the newest key list; retrying"
)
KEY_REFUSED_STATUSES = frozenset({401, 403})
KEY_UNREADABLE = (
    "This sub-account's own Cast API key cannot be decrypted (TOKEN_ENCRYPTION_KEY changed): "
    "enter it again on the Cast SMS settings page"
)


@dataclass(frozen=True, slots=True)
class CastAccount:
    """The Cast key and sender ID a location sends with, and the sender's channel: set by hand
    (`setting`), read from Cast's sender-ID list (`cast`), or `assumed` (`sms`, as before
    channels were known) when neither says."""

    api_key: str
    sender_id: str | None
    source: Literal["location", "default"]
    channel: Channel = "sms"
    channel_source: ChannelSource = "assumed"


@dataclass(frozen=True, slots=True)
class SenderCheck:
    """A sender ID as it will be saved: Cast's own spelling and channel when Cast was asked
    (`checked`), else as typed, with `note` saying why it could not be checked."""

    sender_id: str | None
    channel: Channel | None
    checked: bool
    note: str | None = None


class AccountChoice(Protocol):
    """What a location chose for its Cast account (app.locations.schemas.LocationSettings)."""

    @property
    def cast_api_key(self) -> str | None: ...
    @property
    def sender_id(self) -> str | None: ...
    @property
    def channel(self) -> Channel | None: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def assigned_senders(self) -> list[str]: ...
    @property
    def key_unreadable(self) -> bool: ...


class AccountChoices(Protocol):
    """Where the choices are stored (app.locations.repository.LocationSettingsRepository)."""

    async def get(self, location_id: str, *, strict: bool = True) -> AccountChoice | None: ...

    async def keys_missing_here(self) -> list[str]: ...


def is_assigned(settings: AccountChoice, sender_id: str) -> bool:
    """Whether the operator assigned this default-account sender to the location."""
    wanted = sender_key(sender_id)
    return any(sender_key(assigned) == wanted for assigned in settings.assigned_senders)


def account_from(settings: AccountChoice | None, default: CastAccount) -> CastAccount:
    """The location's own key and sender ID when it set them and is enabled, else the default.

    A location with only a sender ID sends it with the default key, and only when the operator
    assigned it that sender: any other default-account sender belongs to someone else, and the
    location sends with CAST_SENDER_ID instead. A location with only a key lets Cast pick that
    account's sender ID (the default sender ID belongs to another account).
    """
    if settings is None or not settings.enabled:
        return default
    if settings.cast_api_key:
        account = CastAccount(settings.cast_api_key, settings.sender_id, "location")
    elif settings.sender_id and is_assigned(settings, settings.sender_id):
        account = CastAccount(default.api_key, settings.sender_id, "location")
    elif settings.sender_id:
        return default  # not (or no longer) assigned: neither the sender nor its channel
    else:
        account = default
    if settings.channel is not None:
        account = replace(account, channel=settings.channel, channel_source="setting")
    return account


class CastAccounts:
    """`account_for(location_id)`, cached a few seconds; a save in this process invalidates it at
    once, other processes see it within `ttl` seconds. The sender's channel comes from the
    location's setting, else from Cast's sender-ID list (`senders`, cached there)."""

    def __init__(
        self,
        settings: Settings,
        repository: AccountChoices,
        senders: SenderDirectory,
        *,
        ttl: float = ACCOUNT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = CastAccount(
            settings.cast_api_key.get_secret_value(), settings.cast_sender_id, "default"
        )
        self._repo = repository
        self.senders = senders
        self._cache: TTLCache[str, CastAccount] = TTLCache(ttl, clock=clock)

    async def account_for(self, location_id: str) -> CastAccount:
        """The key, sender ID and channel the location's next message goes out with."""
        return await self.with_channel(await self.configured(location_id))

    async def with_channel(self, account: CastAccount) -> CastAccount:
        if account.channel_source == "setting":
            return account
        channel = await self.senders.channel_of(account.api_key, account.sender_id)
        if channel is None:
            return account
        return replace(account, channel=channel, channel_source="cast")

    async def configured(self, location_id: str) -> CastAccount:
        """The key and sender ID only (no channel lookup): for callers that need just the key."""
        if (cached := self._cache.get(location_id)) is not None:
            return cached
        stored = await self._repo.get(location_id, strict=False)
        if stored is not None and stored.enabled and stored.key_unreadable:
            raise await self.unreadable_key(KEY_UNREADABLE)
        account = account_from(stored, self.default)
        self._cache.put(location_id, account)
        return account

    async def unreadable_key(self, reason: str) -> CastError:
        """A Cast key this process cannot decrypt: retryable while other bridges hold an
        encryption key this one lacks (saved under it: restart this one with it), else lost
        (`reason`)."""
        if missing := await self._repo.keys_missing_here():
            return CastError(
                f"{KEY_NOT_HELD_REASON} ({', '.join(missing)})",
                status=None,
                code=KEY_NOT_HELD_CODE,
                retryable=True,
            )
        return CastError(reason, status=None, code="CAST_KEY_UNREADABLE", retryable=False)

    def invalidate(self, location_id: str) -> None:
        self._cache.pop(location_id)

    async def check_sender(
        self,
        api_key: str,
        sender_id: str | None,
        channel: Channel | None,
        *,
        own_key: bool = False,
        check_key: bool = False,
    ) -> SenderCheck:
        """A sender ID about to be saved, checked against the account's approved list (asked
        afresh). A sender Cast does not list, or lists for another channel than `channel`, is
        refused (422 naming the approved ones); when Cast cannot be asked it is accepted as
        typed, and the answer says so. A location's `own_key` that Cast refuses (401/403) is
        refused (422 on `api_key`), asked even without a sender ID when `check_key`."""
        if sender_id is None and not (own_key and check_key):
            return SenderCheck(None, channel, checked=False)
        try:
            approved = await self.senders.senders(api_key, max_age=0.0)
        except CastError as exc:
            if own_key and exc.status in KEY_REFUSED_STATUSES:
                raise ApiError(
                    422,
                    "cast_key_refused",
                    f"Cast refuses this API key ({exc.reason}): nothing was saved",
                    "api_key",
                ) from exc
            return SenderCheck(
                sender_id, channel, checked=False, note=f"Cast could not be asked: {exc.reason}"
            )
        if sender_id is None:
            return SenderCheck(None, channel, checked=False)
        found = find_sender(approved, sender_id)
        if found is None or found.known_channel is None:
            raise _refused(f"{sender_id} is not approved for this Cast account", approved)
        if channel is not None and found.known_channel != channel:
            raise _refused(
                f"{found.sender_id} is approved for the {found.channel} channel, not {channel}",
                approved,
            )
        return SenderCheck(found.sender_id, found.known_channel, checked=True)


def _refused(reason: str, approved: list[SenderId]) -> ApiError:
    listed = ", ".join(f"{s.sender_id} ({s.channel})" for s in approved) or "none yet"
    return ApiError(422, "sender_id_not_approved", f"{reason}; approved: {listed}", "sender_id")
