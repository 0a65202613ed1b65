"""Which locations are installed (issue 27): the token service's answer the outbound worker
sends by, the token that may report a message of an uninstalled location, and app webhooks
known again by their body's digest. On both stores."""

import pytest

from app.metrics import Counters
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.tokens import TokenService, TokenUnavailable
from app.store import Store
from tests.support.units import FakeClock, install, installations, unit_settings

LOCATION, AGENCY = "loc-1", "co-1"


@pytest.fixture
def repo(store: Store) -> InstallationRepository:
    return installations(store)


@pytest.fixture
def tokens(store: Store, repo, ghl, clock) -> TokenService:
    return TokenService(unit_settings(), store, repo, ghl, Counters(), clock=clock)


async def agency(repo: InstallationRepository, clock: FakeClock, *covered: str) -> None:
    await install(repo, clock(), company_id=AGENCY, token="agency", location_ids=list(covered))


async def test_a_location_with_its_own_installation_is_installed(tokens, repo, clock):
    await install(repo, clock(), location_id=LOCATION)

    assert await tokens.installed(LOCATION)


async def test_a_location_its_agency_covers_is_installed_before_it_has_a_token(tokens, repo, clock):
    await agency(repo, clock, LOCATION)
    await repo.link(LOCATION, AGENCY, clock())

    assert await tokens.installed(LOCATION)


async def test_a_location_merely_linked_to_an_agency_is_not_installed_and_gets_no_token(
    tokens, repo, ghl, clock
):
    await agency(repo, clock)  # covers no location: GHL never said the app is installed there
    await repo.link(LOCATION, AGENCY, clock())

    assert not await tokens.installed(LOCATION)
    with pytest.raises(TokenUnavailable) as refused:
        await tokens.access_token(LOCATION)
    assert refused.value.code == "NOT_INSTALLED" and ghl.calls["location_token"] == []


async def test_a_location_nobody_installed_is_not_installed(tokens):
    assert not await tokens.installed(LOCATION)


async def test_the_reporting_token_comes_from_the_agency_and_installs_nothing(
    tokens, repo, ghl, clock
):
    await agency(repo, clock)
    await repo.link(LOCATION, AGENCY, clock())

    token = await tokens.reporting_token(LOCATION)

    assert ghl.calls["location_token"] == [("agency", AGENCY, LOCATION)]
    assert token == "loc-access-1"
    assert await repo.get(location_key(LOCATION)) is None


async def test_no_reporting_token_without_an_installed_agency(tokens, repo, ghl, clock):
    await repo.link(LOCATION, AGENCY, clock())  # GHL named the agency; it never installed

    with pytest.raises(TokenUnavailable) as refused:
        await tokens.reporting_token(LOCATION)

    assert refused.value.code == "NOT_INSTALLED" and ghl.calls["location_token"] == []


# App webhooks known again by their body's digest -----------------------------------------------
async def test_a_digest_is_a_repeat_while_remembered(repo, clock):
    assert await repo.claim_webhook("sha256:ab", "UNINSTALL", clock(), remembered=300)
    clock.advance(299)

    assert not await repo.claim_webhook("sha256:ab", "UNINSTALL", clock(), remembered=300)


async def test_a_digest_may_be_claimed_again_once_forgotten(repo, clock):
    assert await repo.claim_webhook("sha256:ab", "UNINSTALL", clock(), remembered=300)
    clock.advance(301)

    assert await repo.claim_webhook("sha256:ab", "UNINSTALL", clock(), remembered=300)
    assert not await repo.claim_webhook("sha256:ab", "UNINSTALL", clock(), remembered=300)


async def test_a_webhook_id_is_a_repeat_for_ever(repo, clock):
    assert await repo.claim_webhook("wh-1", "INSTALL", clock())
    clock.advance(10**7)

    assert not await repo.claim_webhook("wh-1", "INSTALL", clock())
