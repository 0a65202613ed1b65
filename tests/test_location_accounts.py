"""Per-location Cast accounts: stored encrypted, resolved with a short cache, default otherwise."""

import pytest
from cryptography.fernet import Fernet

from app.cast.account import CastAccountInfo
from app.cast.accounts import CastAccount, CastAccounts
from app.cast.client import CastError
from app.cast.pacing import CastPacer
from app.cast.repository import KeyStates
from app.config import Settings
from app.kit.errors import ApiError
from app.locations.repository import COLLECTION, LocationSettingsRepository
from app.locations.schemas import LocationSettings, SettingsForm
from app.locations.service import LocationService
from app.locations.sso import Session
from app.messages.repository import MessageLogRepository
from app.messages.service import MessageLog
from app.metrics import Counters
from app.oauth.crypto import TokenCipher
from app.oauth.repository import InstallationRepository
from app.oauth.tokens import TokenService
from app.outbound.repository import OutboxRepository
from app.outbound.service import OutboundService
from app.overview.repository import LocationNames
from app.store import Store
from tests.support.doubles import no_pacing, unknown_senders
from tests.support.units import (
    FakeCast,
    FakeGHL,
    installations,
    optout_service,
    outbound_worker,
    unit_settings,
)

DEFAULT_KEY = "cast_" + "d" * 64
OWN_KEY = "cast_" + "1234abcd" * 8


def settings() -> Settings:
    return unit_settings(cast_api_key=DEFAULT_KEY, cast_sender_id="DEFAULT")


def repository(store: Store) -> LocationSettingsRepository:
    return LocationSettingsRepository(store, TokenCipher(Fernet.generate_key()))


def cast_accounts(repo: LocationSettingsRepository) -> CastAccounts:
    """The locations' Cast accounts, their sender-ID lists not known."""
    return CastAccounts(settings(), repo, unknown_senders())


def own(location_id: str = "loc-1", **fields: object) -> LocationSettings:
    values: dict[str, object] = {
        "cast_api_key": OWN_KEY,
        "sender_id": "MYBRAND",
        "enabled": True,
        "updated_at": 1.0,
    }
    return LocationSettings(location_id=location_id, **{**values, **fields})  # type: ignore[arg-type]


async def test_a_location_without_settings_uses_the_default_account(store: Store) -> None:
    accounts = cast_accounts(repository(store))

    assert await accounts.account_for("loc-1") == CastAccount(DEFAULT_KEY, "DEFAULT", "default")


async def test_a_location_with_its_own_key_sends_with_its_key_and_sender_id(store: Store) -> None:
    repo = repository(store)
    await repo.put(own())

    account = await cast_accounts(repo).account_for("loc-1")

    assert account == CastAccount(OWN_KEY, "MYBRAND", "location")


async def test_a_disabled_location_falls_back_to_the_default(store: Store) -> None:
    repo = repository(store)
    await repo.put(own(enabled=False))

    assert (await cast_accounts(repo).account_for("loc-1")).source == "default"


async def test_an_assigned_sender_id_alone_is_sent_with_the_default_key(store: Store) -> None:
    repo = repository(store)
    await repo.put(own(cast_api_key=None, assigned_senders=["MYBRAND"]))

    account = await cast_accounts(repo).account_for("loc-1")

    assert account == CastAccount(DEFAULT_KEY, "MYBRAND", "location")


async def test_a_default_account_sender_not_assigned_is_never_used_to_send(store: Store) -> None:
    repo = repository(store)
    await repo.put(own(cast_api_key=None, sender_id="OTHERBRAND", channel="sim"))

    account = await cast_accounts(repo).account_for("loc-1")

    assert account == CastAccount(DEFAULT_KEY, "DEFAULT", "default")


async def test_a_key_alone_lets_cast_pick_that_accounts_sender_id(store: Store) -> None:
    repo = repository(store)
    await repo.put(own(sender_id=None))

    account = await cast_accounts(repo).account_for("loc-1")

    assert account == CastAccount(OWN_KEY, None, "location")


async def test_the_key_is_encrypted_at_rest(store: Store) -> None:
    repo = repository(store)
    await repo.put(own())

    doc = await store.get_doc(COLLECTION, "loc-1")
    assert doc is not None and OWN_KEY not in str(doc.data)
    found = await repo.get("loc-1")
    assert found is not None and found.cast_api_key == OWN_KEY


async def test_the_cache_serves_until_invalidated_or_expired(store: Store) -> None:
    repo = repository(store)
    now = [100.0]
    accounts = CastAccounts(settings(), repo, unknown_senders(), ttl=5.0, clock=lambda: now[0])
    assert (await accounts.account_for("loc-1")).source == "default"
    await repo.put(own())

    assert (await accounts.account_for("loc-1")).source == "default"  # cached
    now[0] += 5.1
    assert (await accounts.account_for("loc-1")).source == "location"  # expired
    await repo.put(own(sender_id="OTHER"))
    accounts.invalidate("loc-1")
    assert (await accounts.account_for("loc-1")).sender_id == "OTHER"  # saved here


async def test_a_key_the_cipher_cannot_read_raises_unless_asked_not_to(store: Store) -> None:
    await repository(store).put(own())
    other = repository(store)  # another encryption key: TOKEN_ENCRYPTION_KEY changed

    with pytest.raises(ValueError):
        await other.get("loc-1")
    lenient = await other.get("loc-1", strict=False)
    assert lenient is not None and lenient.key_unreadable and lenient.cast_api_key is None
    with pytest.raises(CastError):  # the message fails; never another account's key
        await cast_accounts(other).account_for("loc-1")


def idle_outbound(store: Store, outbox: OutboxRepository) -> OutboundService:
    """Where the settings page queues its test SMS; its worker does not run here."""
    ghl = FakeGHL()
    tokens = TokenService(settings(), store, installations(store), ghl, Counters())
    pacer = CastPacer(store, per_key_rate=1e6, ip_rate=1e6)
    worker = outbound_worker(settings(), store, FakeCast(), ghl, tokens, pacer)
    return OutboundService(settings(), outbox, Counters(), worker)


async def test_saving_over_an_unreadable_key_needs_a_new_key_or_its_removal(store: Store) -> None:
    await repository(store).put(own())
    cipher = TokenCipher(Fernet.generate_key())
    repo = LocationSettingsRepository(store, cipher)
    outbox = OutboxRepository(store)
    names = LocationNames(store)
    service = LocationService(
        settings(),
        repo,
        cast_accounts(repo),
        InstallationRepository(store, cipher),
        outbox,
        idle_outbound(store, outbox),
        optout_service(settings(), store),
        account_info=CastAccountInfo(
            FakeCast(), unknown_senders(), KeyStates(store), Counters(), no_pacing
        ),
        message_log=MessageLog(MessageLogRepository(store), names.all),
        names=names,
    )
    session = Session("loc-1", "user-1", "Maria", 2e9, "company-1", admin=True)

    view = await service.view(session)
    assert view.key_unreadable and view.masked_key is None and view.uses_own_account
    with pytest.raises(ApiError) as refused:
        await service.save(session, SettingsForm(sender_id="MYBRAND", enabled=True))
    assert (refused.value.status, refused.value.field) == (422, "api_key")
    await service.save(session, SettingsForm(sender_id="MYBRAND", api_key=OWN_KEY, enabled=True))
    stored = await repo.get("loc-1")
    assert stored is not None and stored.cast_api_key == OWN_KEY and not stored.key_unreadable


async def test_the_locations_naming_a_sender_id_are_found_in_any_spelling(store: Store):
    repo = repository(store)
    await repo.put(own("loc-sim", sender_id="+639170000001"))
    await repo.put(own("loc-brand", sender_id="MYBRAND"))
    await repo.put(
        own("loc-assigned", cast_api_key=None, sender_id=None, assigned_senders=["ACME"])
    )

    assert [s.location_id for s in await repo.locations_naming("0917 000 0001")] == ["loc-sim"]
    assert [s.location_id for s in await repo.locations_naming("MYBRAND")] == ["loc-brand"]
    assert [s.location_id for s in await repo.locations_naming("ACME")] == ["loc-assigned"]
    assert await repo.locations_naming("mybrand") == []  # names exactly as Cast lists them
    assert await repo.locations_naming("+639179999999") == []


async def test_a_location_that_changed_its_sender_id_no_longer_names_the_old_one(store: Store):
    repo = repository(store)
    await repo.put(own("loc-sim", sender_id="+639170000001"))
    await repo.put(own("loc-sim", sender_id="MYBRAND"))

    assert await repo.locations_naming("+639170000001") == []
    assert [s.location_id for s in await repo.locations_naming("MYBRAND")] == ["loc-sim"]
    assert len(await store.list_docs("location_senders")) == 1  # no stale entry left
