"""Who owns a sender ID, for routing the replies addressed to it (docs/architecture.md, "Who owns
a sender"): a location owns a sender on its own Cast key once Cast listed it for that key, and a
default-account sender the operator assigned it. Several locations of one agency may share an
assigned sender; a sender typed while Cast could not be asked is owned only once Cast lists it
(asked here, through the cached sender-ID list, when a reply needs it)."""

import logging

from app.cast.accounts import CastAccounts, is_assigned
from app.cast.client import CastError
from app.cast.keys import key_label
from app.cast.senders import sender_key
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings

log = logging.getLogger(__name__)


class SenderOwners:
    def __init__(self, repository: LocationSettingsRepository, accounts: CastAccounts) -> None:
        self._repo = repository
        self._accounts = accounts

    async def owners(self, sender_id: str) -> list[str]:
        """The enabled locations owning `sender_id` (any spelling of a number)."""
        return [
            settings.location_id
            for settings in await self._repo.locations_naming(sender_id)
            if await self._owns(settings, sender_id)
        ]

    async def _owns(self, settings: LocationSettings, sender_id: str) -> bool:
        if not settings.enabled or settings.key_unreadable:
            return False
        if settings.cast_api_key is None:
            return is_assigned(settings, sender_id)
        if settings.sender_id is None or sender_key(settings.sender_id) != sender_key(sender_id):
            return False  # assigned on the default account, but the location sends on its own
        return settings.sender_checked or await self._confirm(settings, settings.cast_api_key)

    async def _confirm(self, settings: LocationSettings, api_key: str) -> bool:
        """Ask Cast (cached) whether the location's key lists its sender ID now; remember a yes."""
        assert settings.sender_id is not None
        try:
            listed = await self._accounts.senders.lookup(api_key, settings.sender_id)
        except CastError as exc:
            log.info(
                "a sender ID saved unchecked is still not confirmed by Cast",
                extra={
                    "location_id": settings.location_id,
                    "key": key_label(api_key),
                    "reason": exc.message,
                },
            )
            return False
        if listed is None:
            return False
        await self._repo.mark_sender_checked(settings.location_id, settings.sender_id)
        return True
