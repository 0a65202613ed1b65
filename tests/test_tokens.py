"""The token service's state machine: refresh ahead of expiry, one refresh at a time (in one
process and across processes sharing the store), invalid_grant, agency (company) tokens. A real
SQLite store, a fake GHL client, a fake clock."""

import asyncio

import pytest

from app.ghl.client import GHLError
from app.ghl.schemas import TokenResponse
from app.metrics import Counters
from app.oauth import tokens as tokens_module
from app.oauth.repository import InstallationRepository, location_key
from app.oauth.tokens import REFRESH_AHEAD_SECONDS, TokenService, TokenUnavailable
from app.store import Store
from tests.support.units import install, installations, unit_settings

LOCATION, COMPANY = "loc-1", "co-1"
INVALID_GRANT = GHLError(
    "GHL answered 400", status=400, body='{"error":"invalid_grant","error_description":"x"}'
)


@pytest.fixture
def repo(sqlite_store: Store) -> InstallationRepository:
    return installations(sqlite_store)


@pytest.fixture
def service(sqlite_store: Store, repo, ghl, clock) -> TokenService:
    return TokenService(unit_settings(), sqlite_store, repo, ghl, Counters(), clock=clock)


async def stored(repo: InstallationRepository, location_id: str = LOCATION):
    found = await repo.get(location_key(location_id))
    assert found is not None
    return found[0]


async def test_a_token_valid_beyond_the_refresh_margin_is_used_without_asking_ghl(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, expires_in=REFRESH_AHEAD_SECONDS + 1)
    assert await service.access_token(LOCATION) == "access-0"
    assert ghl.calls["exchange_token"] == []


async def test_a_token_within_the_refresh_margin_is_refreshed_ahead_of_expiry(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, expires_in=REFRESH_AHEAD_SECONDS)
    ghl.script("exchange_token", TokenResponse(access_token="new", refresh_token="r2"))
    assert await service.access_token(LOCATION) == "new"
    (form,) = ghl.calls["exchange_token"][0]
    assert form["grant_type"] == "refresh_token"
    assert (form["refresh_token"], form["user_type"]) == ("refresh-of-access-0", "Location")
    renewed = await stored(repo)
    assert (renewed.access_token, renewed.refresh_token) == ("new", "r2")
    assert renewed.expires_at == clock() + 86399


async def test_a_token_is_refreshed_once_the_clock_reaches_the_margin(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION, expires_in=3600)
    assert await service.access_token(LOCATION) == "access-0"
    clock.advance(3600 - REFRESH_AHEAD_SECONDS)
    assert await service.access_token(LOCATION) != "access-0"
    assert len(ghl.calls["exchange_token"]) == 1


async def test_a_refresh_answer_without_a_refresh_token_keeps_the_stored_one(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", TokenResponse(access_token="new"))
    await service.access_token(LOCATION)
    assert (await stored(repo)).refresh_token == "refresh-of-access-0"


async def test_concurrent_callers_in_one_process_share_one_refresh(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    tokens = await asyncio.gather(*(service.access_token(LOCATION) for _ in range(10)))
    assert len(ghl.calls["exchange_token"]) == 1
    assert set(tokens) == {"access-1"}


async def test_two_processes_on_one_store_refresh_once(sqlite_store, repo, ghl, clock, monkeypatch):
    monkeypatch.setattr(tokens_module, "WAIT_STEP_SECONDS", 0)
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    first, second = (
        TokenService(unit_settings(), sqlite_store, repo, ghl, Counters(), clock=clock)
        for _ in range(2)
    )
    answer = ghl.hold("exchange_token")
    refreshing = asyncio.create_task(first.access_token(LOCATION))
    await ghl.called("exchange_token")  # the first holds the store lease, GHL answers late
    waiting = asyncio.create_task(second.access_token(LOCATION))
    for _ in range(20):
        await asyncio.sleep(0)
    answer.set()
    assert await refreshing == await waiting == "access-1"
    assert len(ghl.calls["exchange_token"]) == 1


async def test_a_401_refreshes_the_token_ghl_rejected(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION)
    assert await service.refresh_after_unauthorized(LOCATION, "access-0") == "access-1"
    assert len(ghl.calls["exchange_token"]) == 1


async def test_a_401_on_a_token_already_replaced_uses_the_new_one_without_a_refresh(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, token="access-new")
    assert await service.refresh_after_unauthorized(LOCATION, "access-old") == "access-new"
    assert ghl.calls["exchange_token"] == []


async def test_invalid_grant_marks_the_location_for_reauthorization(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", INVALID_GRANT)
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "REAUTHORIZATION_NEEDED"
    flagged = await stored(repo)
    assert flagged.needs_reauth and "invalid_grant" in (flagged.reauth_reason or "")
    assert "invalid_grant" in (await service.reauthorization_needed(LOCATION) or "")


async def test_a_location_needing_reauthorization_is_refused_without_asking_ghl(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, needs_reauth=True, reauth_reason="why")
    with pytest.raises(TokenUnavailable, match="why"):
        await service.access_token(LOCATION)
    assert ghl.calls["exchange_token"] == []


async def test_a_transient_refresh_failure_is_raised_and_the_location_stays_usable(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", GHLError("GHL answered 503", status=503))
    with pytest.raises(GHLError):
        await service.access_token(LOCATION)
    assert not (await stored(repo)).needs_reauth
    assert await service.access_token(LOCATION) == "access-1"


async def test_rejected_client_credentials_do_not_flag_the_location(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", GHLError("400", status=400, body='{"error":"invalid_client"}'))
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "GHL_CLIENT_REJECTED"
    assert not (await stored(repo)).needs_reauth


# Refusals classified as OAuth defines them (issue 27) ---------------------------------------
def _refused(status: int, body: str) -> GHLError:
    return GHLError(f"GHL answered {status}", status=status, body=body)


UNAUTHORIZED_CLIENT = '{"error":"unauthorized_client","error_description":"bad secret"}'


@pytest.fixture
def counted(sqlite_store: Store, repo, ghl, clock) -> tuple[TokenService, Counters]:
    counters = Counters()
    return TokenService(unit_settings(), sqlite_store, repo, ghl, counters, clock=clock), counters


async def test_invalid_grant_answered_with_401_marks_the_location_for_reauthorization(
    service, repo, ghl, clock
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", _refused(401, '{"error":"invalid_grant"}'))
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "REAUTHORIZATION_NEEDED"
    assert (await stored(repo)).needs_reauth


@pytest.mark.parametrize(
    "body",
    [UNAUTHORIZED_CLIENT, '{"message":"Unauthorized"}', ""],
    ids=["unauthorized_client", "a 401 naming no OAuth error", "a bare 401"],
)
async def test_a_401_for_the_apps_credentials_is_an_app_fault_that_flags_no_installation(
    counted, repo, ghl, clock, body
):
    service, counters = counted
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", _refused(401, body))
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "GHL_CLIENT_REJECTED"
    assert "GHL_CLIENT_SECRET" in refused.value.message
    assert not (await stored(repo)).needs_reauth
    assert counters.get("ghl_client_rejected") == 1
    fault = await service.client_fault()
    assert fault is not None and fault["status"] == 401 and fault["at"] == clock()


async def test_a_rejected_client_is_logged_as_an_error_once_however_many_refreshes_fail(
    service, repo, ghl, clock, caplog: pytest.LogCaptureFixture
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    await install(repo, clock(), location_id="loc-2", expires_in=0)
    ghl.script("exchange_token", _refused(400, UNAUTHORIZED_CLIENT), _refused(401, ""))
    for location in (LOCATION, "loc-2"):
        with pytest.raises(TokenUnavailable):
            await service.access_token(location)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        "GHL refused the app's client credentials: check GHL_CLIENT_ID and GHL_CLIENT_SECRET "
        "(no installation is flagged)"
    ]
    assert not (await stored(repo, "loc-2")).needs_reauth


async def test_a_successful_refresh_clears_the_noted_app_fault(service, repo, ghl, clock):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", _refused(401, UNAUTHORIZED_CLIENT))
    with pytest.raises(TokenUnavailable):
        await service.access_token(LOCATION)
    assert await service.access_token(LOCATION) == "access-1"
    assert await service.client_fault() is None


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (
            422,
            '{"statusCode":422,"message":["user_type must be Company or Location"]}',
            "user_type",
        ),
        (
            400,
            '{"error":"invalid_request","error_description":"redirect_uri mismatch"}',
            "invalid_request: redirect_uri mismatch",
        ),
        (403, '{"message":"Forbidden resource"}', "Forbidden resource"),
    ],
    ids=["422", "invalid_request", "403"],
)
async def test_another_4xx_fails_at_once_with_ghls_text_and_flags_nothing(
    service, repo, ghl, clock, status, body, text
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", _refused(status, body))
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "GHL_TOKEN_REFUSED"
    assert str(status) in refused.value.message and text in refused.value.message
    assert not (await stored(repo)).needs_reauth
    assert await service.client_fault() is None


@pytest.mark.parametrize("status", [408, 429, 502])
async def test_a_transient_refusal_of_a_refresh_is_raised_for_the_caller_to_retry(
    service, repo, ghl, clock, status
):
    await install(repo, clock(), location_id=LOCATION, expires_in=0)
    ghl.script("exchange_token", _refused(status, '{"error":"invalid_client"}'))
    with pytest.raises(GHLError):
        await service.access_token(LOCATION)
    assert not (await stored(repo)).needs_reauth
    assert await service.client_fault() is None


async def test_a_location_neither_installed_nor_linked_to_an_agency_is_not_installed(service, ghl):
    with pytest.raises(TokenUnavailable) as refused:
        await service.access_token(LOCATION)
    assert refused.value.code == "NOT_INSTALLED"
    assert ghl.calls["location_token"] == []


async def test_a_location_of_an_installed_agency_gets_its_token_from_the_agency_token(
    service, repo, ghl, clock
):
    await install(
        repo, clock(), company_id=COMPANY, token="company-access", location_ids=[LOCATION]
    )
    await repo.link(LOCATION, COMPANY, clock())
    assert await service.access_token(LOCATION) == "loc-access-1"
    assert ghl.calls["location_token"] == [("company-access", COMPANY, LOCATION)]
    created = await stored(repo)
    assert (created.source, created.company_id, created.user_type) == (
        "company",
        COMPANY,
        "Location",
    )


async def test_an_agency_token_near_expiry_is_refreshed_as_a_company_first(
    service, repo, ghl, clock
):
    await install(
        repo,
        clock(),
        company_id=COMPANY,
        token="company-access",
        location_ids=[LOCATION],
        expires_in=0,
    )
    await repo.link(LOCATION, COMPANY, clock())
    await service.access_token(LOCATION)
    (form,) = ghl.calls["exchange_token"][0]
    assert form["user_type"] == "Company"
    assert ghl.tokens_used("location_token") == ["access-1"]


async def test_an_agency_token_ghl_rejects_with_401_is_refreshed_once(service, repo, ghl, clock):
    await install(
        repo, clock(), company_id=COMPANY, token="company-access", location_ids=[LOCATION]
    )
    await repo.link(LOCATION, COMPANY, clock())
    ghl.script("location_token", GHLError("401", status=401))
    assert await service.access_token(LOCATION) == "loc-access-1"
    assert ghl.tokens_used("location_token") == ["company-access", "access-1"]


async def test_invalid_grant_on_an_agency_location_falls_back_to_the_agency_token(
    service, repo, ghl, clock
):
    await install(
        repo, clock(), company_id=COMPANY, token="company-access", location_ids=[LOCATION]
    )
    await install(repo, clock(), location_id=LOCATION, company_id=COMPANY, expires_in=0)
    ghl.script("exchange_token", INVALID_GRANT)
    assert await service.access_token(LOCATION) == "loc-access-1"
    healed = await stored(repo)
    assert not healed.needs_reauth and healed.source == "company"


async def test_ensure_location_heals_a_location_needing_reauthorization_from_its_agency(
    service, repo, ghl, clock
):
    await install(
        repo, clock(), company_id=COMPANY, token="company-access", location_ids=[LOCATION]
    )
    await install(repo, clock(), location_id=LOCATION, needs_reauth=True, reauth_reason="old")
    assert await service.ensure_location(LOCATION, COMPANY)
    assert await service.reauthorization_needed(LOCATION) is None
    assert (await stored(repo)).access_token == "loc-access-1"


async def test_ensure_location_reports_false_when_the_agency_cannot_give_a_token(
    service, repo, ghl, clock
):
    await install(
        repo, clock(), company_id=COMPANY, token="company-access", location_ids=[LOCATION]
    )
    ghl.script("location_token", GHLError("400", status=400, body="location not in company"))
    assert not await service.ensure_location(LOCATION, COMPANY)
