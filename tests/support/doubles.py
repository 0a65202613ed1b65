"""Stand-ins for collaborators production always wires (app/composition.py) and a unit test has
no use for: each behaves as its real counterpart does when nothing limits, counts or lists
anything. A test about one of them uses the real one (or a recording double of its own).

What is real and cheap is used as is instead: `Counters()`, and for the GHL client
`app.ghl.pacing.Unpaced` and `app.metrics.unobserved`."""

from app.cast.client import CastError
from app.cast.schemas import SenderId, SharedSenderList
from app.cast.senders import SenderDirectory


async def no_pacing() -> None:
    """Cast's per-IP request budget (`CastPacer.before_poll`) with room for every read."""


async def ignore_rate_limit(retry_after: float | None) -> None:
    """`CastPacer.read_rate_limited` for a test whose Cast never answers 429 to a read."""


async def no_owners(sender_id: str) -> list[str]:
    """`SenderOwners.owners` for a test whose locations own no sender ID."""
    return []


async def key_sent_nothing_since(api_key: str, at: float) -> bool:
    """`CastPacer.sent_since` for a test whose sends do not go through a pacer."""
    return False


class CastWithoutSenderLists:
    """The one Cast call a SenderDirectory makes, never answered."""

    async def sender_ids(self, api_key: str) -> list[SenderId]:
        raise CastError("Cast did not answer in time", status=None, retryable=True)


class NothingShared:
    """`SenderLists` of a process alone on its store: no other process's list to read, and the
    claim to ask Cast always its own."""

    async def get(self, fingerprint: str) -> SharedSenderList | None:
        return None

    async def put(self, fingerprint: str, listing: SharedSenderList) -> None:
        return None

    async def claim(self, fingerprint: str, owner: str, now: float) -> bool:
        return True

    async def release(self, fingerprint: str, owner: str) -> None:
        return None


def unknown_senders() -> SenderDirectory:
    """Sender-ID lists Cast cannot be asked for: a channel is the location's setting, else
    assumed (`sms`); a sender ID is saved unchecked, and one saved unchecked stays unconfirmed."""
    return SenderDirectory(CastWithoutSenderLists(), no_pacing, NothingShared())


async def nothing_to_check() -> None:
    """`CastPacer.before_send`'s last check before a send (the worker's opt-out read), for a test
    about pacing alone."""
