"""The agency overview on the running bridge: `GET /api/admin/locations` shows every
sub-account with GHL's name, install state, route, figures, opt-outs and its own credits."""

import time
from typing import Any

import httpx
import pytest

from app.devkit.harness import CIPHER, LOCATION, Harness
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.repository import InstallationRepository, location_key
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from app.store import Store
from tests.e2e.test_admin import ADMIN_KEY
from tests.e2e.test_message_log import sent
from tests.e2e.test_oauth import install_agency

OWN_KEY = "cast_" + "0be5" * 16
HOUR = 3600.0


async def get(h: Harness, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.get(
            path, params=params, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )


async def seed_figures(store: Store) -> None:
    now = time.time()
    for i, status in enumerate(["delivered", "delivered", "delivered", "failed"]):
        await sent(store, f"m-a{i}", now - HOUR - i, location_id="loc-a", status=status)
    await sent(store, "m-a-old", now - 3 * 24 * HOUR, location_id="loc-a", status="failed")
    await sent(store, "m-a-older", now - 9 * 24 * HOUR, location_id="loc-a")
    optout = OptOut(
        location_id="loc-a", phone="+639171230009", source="keyword", at=now, recorded_at=now
    )
    assert await OptOutList(store).add(optout)
    own = LocationSettings(
        location_id="loc-b",
        cast_api_key=OWN_KEY,
        sender_id="BRANDB",
        low_credit_threshold=50,
        updated_at=now,
        updated_by="test",
    )
    await LocationSettingsRepository(store, CIPHER).put(own)


async def start_agency(harness: Harness) -> Harness:
    """Start the bridge with agency co-1 installed (sub-accounts loc-a and loc-b, their
    figures seeded) and LOCATION of another agency."""
    harness.cast.api_keys.add(OWN_KEY)
    await harness.seed_installation()
    harness.start()
    harness.ghl.installed["co-1"] = ["loc-a", "loc-b"]
    assert (await install_agency(harness)).status_code == 200
    await harness.with_store(seed_figures)
    return harness


@pytest.fixture
async def agency(harness: Harness) -> Harness:
    """Agency co-1 with sub-accounts loc-a and loc-b, and LOCATION of another agency."""
    harness.env["ADMIN_API_KEY"] = ADMIN_KEY
    harness.cast.approve(OWN_KEY, "BRANDB", "sms")
    return await start_agency(harness)


def by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {row["location_id"]: row for row in response.json()["locations"]}


async def test_the_overview_shows_each_sub_accounts_name_state_and_figures(agency: Harness):
    rows = by_id(await get(agency, "/api/admin/locations"))

    assert set(rows) == {"loc-a", "loc-b", LOCATION}
    a = rows["loc-a"]
    assert (a["name"], a["company_id"], a["installed"], a["via_agency"]) == (
        "Location loc-a",
        "co-1",
        True,
        True,
    )
    assert (a["last_24h"]["sent"], a["last_24h"]["delivered"], a["last_24h"]["failed"]) == (4, 3, 1)
    assert a["last_24h"]["delivery_rate"] == 0.75
    assert (a["last_7d"]["sent"], a["last_7d"]["failed"], a["last_7d"]["delivery_rate"]) == (
        5,
        2,
        0.6,
    )
    assert a["opted_out"] == 1 and a["own_key"] is False and a["credits"] is None


async def test_a_sub_account_with_its_own_key_shows_its_sender_and_credits(agency: Harness):
    agency.cast.credits = 42

    b = by_id(await get(agency, "/api/admin/locations"))["loc-b"]

    assert (b["own_key"], b["sender_id"], b["channel"]) == (True, "BRANDB", "sms")
    assert (b["credits"], b["low_credit_threshold"]) == (42, 50)
    assert b["last_24h"]["delivery_rate"] is None and b["last_7d"]["sent"] == 0
    assert OWN_KEY not in str(b)


async def test_company_id_limits_the_overview_to_that_agencys_sub_accounts(agency: Harness):
    rows = by_id(await get(agency, "/api/admin/locations", company_id="co-1"))

    assert sorted(rows) == ["loc-a", "loc-b"]


async def test_a_sub_account_whose_token_was_refused_needs_a_reinstall(agency: Harness):
    async def refuse(store: Store) -> None:
        repo = InstallationRepository(store, CIPHER)
        found = await repo.get(location_key("loc-b"))
        assert found is not None
        installation = found[0]
        installation.needs_reauth, installation.reauth_reason = True, "invalid_grant"
        await repo.put(installation)

    await agency.with_store(refuse)

    b = by_id(await get(agency, "/api/admin/locations"))["loc-b"]

    assert (b["needs_reinstall"], b["reinstall_reason"]) == (True, "invalid_grant")


async def test_the_names_ghl_gave_show_in_the_message_log(agency: Harness):
    await get(agency, "/api/admin/locations")

    response = await get(agency, "/api/admin/messages", location_id="loc-a", limit="1")

    (row,) = response.json()["messages"]
    assert (row["location_id"], row["location_name"]) == ("loc-a", "Location loc-a")


async def test_the_installations_list_names_each_location_ghl_named(agency: Harness):
    await get(agency, "/api/admin/locations")

    response = await get(agency, "/api/admin/installations")

    named = {i["location_id"]: i["location_name"] for i in response.json()["installations"]}
    assert named.get("loc-a") == "Location loc-a"


async def test_the_agency_install_page_names_the_sub_accounts_it_made_ready(harness: Harness):
    harness.start()
    harness.ghl.installed["co-1"] = ["loc-a"]

    page = await install_agency(harness)

    assert "Sub-accounts ready: Location loc-a (<code>loc-a</code>)." in page.text


async def test_views_within_a_minute_ask_ghl_for_the_agencys_sub_accounts_once(agency: Harness):
    asked = len(agency.ghl.installed_requests)
    for _ in range(5):
        assert (await get(agency, "/api/admin/locations")).status_code == 200

    assert len(agency.ghl.installed_requests) == asked + 1
