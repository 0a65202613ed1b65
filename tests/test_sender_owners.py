"""Who owns a sender ID (issue 28), on both stores: a location owns its own key's sender once
Cast listed it, and a default-account sender the operator assigned it; replies follow `to` to
that owner whoever else texted the customer."""

from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet

from app.cast.accounts import CastAccounts
from app.cast.client import CastClient
from app.cast.senders import SenderDirectory
from app.config import Settings
from app.devkit.fake_cast import FakeCast
from app.inbound.repository import MAX_SENDERS, RecipientDirectory
from app.inbound.routing import InboundRouter, NoRoute, Route
from app.kit.errors import ApiError
from app.locations.owners import SenderOwners
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.crypto import TokenCipher
from app.store import Store
from tests.support.doubles import NothingShared, no_pacing
from tests.support.units import FakeClock, NoChoices, cast_client_over, unit_settings

DEFAULT_KEY = "cast_" + "d" * 64
OWN_KEY = "cast_" + "1234abcd" * 8
SIM_A, SIM_B = "+639170000001", "+639170000002"
CUSTOMER = "+639171234567"
NOW = 1_800_000_000.0
DAY = 86_400.0


def settings() -> Settings:
    return unit_settings(cast_api_key=DEFAULT_KEY, cast_sender_id="DEFAULT")


@pytest.fixture
def cast() -> FakeCast:
    return FakeCast({DEFAULT_KEY, OWN_KEY})


@pytest.fixture
async def client(cast: FakeCast) -> AsyncIterator[CastClient]:
    async with cast_client_over(cast.app) as client:
        yield client


@pytest.fixture
def repo(store: Store) -> LocationSettingsRepository:
    return LocationSettingsRepository(store, TokenCipher(Fernet.generate_key()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def owners(repo: LocationSettingsRepository, client: CastClient, clock: FakeClock) -> SenderOwners:
    accounts = CastAccounts(
        settings(), repo, senders=SenderDirectory(client, no_pacing, NothingShared(), clock=clock)
    )
    return SenderOwners(repo, accounts)


def location(location_id: str, **fields: object) -> LocationSettings:
    return LocationSettings.model_validate(
        {"location_id": location_id, "updated_at": 1.0, **fields}
    )


def assigned(location_id: str, *senders: str) -> LocationSettings:
    return location(location_id, sender_id=senders[0], assigned_senders=list(senders))


# Ownership -----------------------------------------------------------------------------------


async def test_an_assigned_default_account_sender_is_owned_by_its_location(repo, owners):
    await repo.put(assigned("loc-b", SIM_B, "BRAND B"))

    assert await owners.owners("0917 000 0002") == ["loc-b"]
    assert await owners.owners("BRAND B") == ["loc-b"]  # assigned, though not the one in use


async def test_a_default_account_sender_chosen_without_assignment_is_owned_by_nobody(repo, owners):
    await repo.put(location("loc-a", sender_id=SIM_B))

    assert await owners.owners(SIM_B) == []


async def test_a_disabled_location_owns_nothing(repo, owners):
    await repo.put(assigned("loc-b", SIM_B).model_copy(update={"enabled": False}))

    assert await owners.owners(SIM_B) == []


async def test_an_own_key_sender_confirmed_by_cast_is_its_locations(repo, owners):
    await repo.put(location("loc-own", cast_api_key=OWN_KEY, sender_id=SIM_A))

    assert await owners.owners(SIM_A) == ["loc-own"]


async def test_an_own_key_sender_saved_unchecked_is_owned_only_once_cast_lists_it(
    repo, owners, cast, clock
):
    unchecked = location("loc-own", cast_api_key=OWN_KEY, sender_id=SIM_A, sender_checked=False)
    await repo.put(unchecked)

    before = await owners.owners(SIM_A)
    cast.approve(OWN_KEY, SIM_A, "sim")
    clock.advance(60)  # Cast is asked again after a miss, at most every 30 s
    after = await owners.owners(SIM_A)

    assert before == [] and after == ["loc-own"]
    stored = await repo.get("loc-own")
    assert stored is not None and stored.sender_checked  # asked once, remembered


async def test_an_own_key_location_does_not_own_a_default_sender_it_was_once_assigned(repo, owners):
    await repo.put(
        location("loc-x", cast_api_key=OWN_KEY, sender_id=SIM_A, assigned_senders=[SIM_B])
    )

    assert await owners.owners(SIM_B) == []


# Replies follow `to` -------------------------------------------------------------------------


def router_over(store: Store, owners: SenderOwners) -> tuple[InboundRouter, RecipientDirectory]:
    recipients = RecipientDirectory(store, 30 * DAY)
    return InboundRouter(settings(), recipients, owners.owners), recipients


async def test_a_reply_to_a_locations_own_sender_goes_there_whoever_texted_the_customer(
    store, repo, owners
):
    await repo.put(assigned("loc-b", SIM_B))
    router, recipients = router_over(store, owners)
    await recipients.remember(CUSTOMER, "loc-a", "BRAND A", NOW - DAY)  # the hostile agency

    route = await router.route(CUSTOMER, SIM_B, NOW)

    assert route == Route("loc-b", "sender_id")


async def test_an_unknown_sender_send_never_hides_a_reply_addressed_to_its_owner(
    store, repo, owners
):
    await repo.put(assigned("loc-b", SIM_B))
    router, recipients = router_over(store, owners)
    await recipients.remember(CUSTOMER, "loc-b", SIM_B, NOW - 2 * DAY)
    await recipients.remember(CUSTOMER, "loc-x", None, NOW - DAY)  # Cast's default sender

    assert await router.route(CUSTOMER, SIM_B, NOW) == Route("loc-b", "sender_id")


async def test_fifty_other_senders_never_hide_a_reply_addressed_to_its_owner(store, repo, owners):
    await repo.put(assigned("loc-b", SIM_B))
    router, recipients = router_over(store, owners)
    await recipients.remember(CUSTOMER, "loc-b", SIM_B, NOW - 3 * DAY)
    for n in range(MAX_SENDERS):
        await recipients.remember(CUSTOMER, f"loc-{n}", f"BRAND{n}", NOW - DAY + n)

    assert await router.route(CUSTOMER, SIM_B, NOW) == Route("loc-b", "sender_id")


async def test_among_locations_sharing_a_sender_the_one_that_texted_the_customer_gets_it(
    store, repo, owners
):
    await repo.put(assigned("loc-b1", SIM_B))
    await repo.put(assigned("loc-b2", SIM_B))
    router, recipients = router_over(store, owners)
    await recipients.remember(CUSTOMER, "loc-b2", SIM_B, NOW - 2 * DAY)
    await recipients.remember(CUSTOMER, "loc-a", "BRAND A", NOW - DAY)  # not sharing: ignored

    assert await router.route(CUSTOMER, SIM_B, NOW) == Route("loc-b2", "recent_outbound")


async def test_a_shared_sender_that_both_sharers_texted_from_is_held_naming_them(
    store, repo, owners
):
    await repo.put(assigned("loc-b1", SIM_B))
    await repo.put(assigned("loc-b2", SIM_B))
    router, recipients = router_over(store, owners)
    await recipients.remember(CUSTOMER, "loc-b1", SIM_B, NOW - 2 * DAY)
    await recipients.remember(CUSTOMER, "loc-b2", SIM_B, NOW - DAY)

    route = await router.route(CUSTOMER, SIM_B, NOW)

    assert isinstance(route, NoRoute)
    assert f"'{SIM_B}' is shared by 2 locations" in route.reason
    assert "2 of them (loc-b2, loc-b1) texted" in route.reason


# Saving: a key Cast refuses is refused ---------------------------------------------------------


async def test_a_new_own_key_cast_refuses_is_refused_on_api_key(client):
    accounts = CastAccounts(
        settings(), NoChoices(), senders=SenderDirectory(client, no_pacing, NothingShared())
    )
    refused_key = "cast_" + "0" * 64

    with pytest.raises(ApiError) as refused:
        await accounts.check_sender(refused_key, None, None, own_key=True, check_key=True)

    assert (refused.value.status, refused.value.code) == (422, "cast_key_refused")
    assert refused.value.field == "api_key"


async def test_the_operators_key_refused_only_leaves_the_sender_unchecked(client, cast):
    cast.api_keys.clear()
    accounts = CastAccounts(
        settings(), NoChoices(), senders=SenderDirectory(client, no_pacing, NothingShared())
    )

    check = await accounts.check_sender(DEFAULT_KEY, SIM_B, None)

    assert (check.sender_id, check.checked) == (SIM_B, False)
    assert check.note is not None and "could not be asked" in check.note
