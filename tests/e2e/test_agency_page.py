"""The agency overview inside GHL (`/agency`, a custom page in the agency's menu): GHL SSO,
agency admins only, that agency's sub-accounts only, by the names GHL gives them."""

import re

import httpx
import pytest

from app.devkit.harness import LOCATION, Harness
from tests.e2e.test_overview import OWN_KEY, start_agency
from tests.support.cryptojs import SSO_KEY, sso_payload, user_context


@pytest.fixture
async def agency(harness: Harness) -> Harness:
    """Agency co-1 with sub-accounts loc-a and loc-b; LOCATION belongs to another agency."""
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    return await start_agency(harness)


async def open_page(h: Harness, **context: object) -> httpx.Response:
    payload = sso_payload(user_context(None, **context))  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.post("/agency/sso", data={"payload": payload})


def listed(page_html: str) -> list[str]:
    return re.findall(r'<tr data-location="([^"]+)"', page_html)


async def test_the_shell_signs_in_through_the_agency_route(agency: Harness):
    async with httpx.AsyncClient(base_url=agency.url, timeout=10) as client:
        shell = await client.get("/agency")

    assert shell.status_code == 200
    assert 'id="sso-form" method="post" action="/agency/sso"' in shell.text


async def test_an_agency_admin_sees_only_that_agencys_sub_accounts_by_name(agency: Harness):
    response = await open_page(agency, type="agency", company_id="co-1")

    assert response.status_code == 200
    assert listed(response.text) == ["loc-a", "loc-b"]
    assert LOCATION not in listed(response.text)
    assert "Location loc-a" in response.text and "4 sent · 3 delivered · 1 failed · 75%" in (
        response.text
    )
    assert OWN_KEY not in response.text


@pytest.mark.parametrize(
    ("context", "code"),
    [
        ({"type": "location", "company_id": "co-1"}, "not_agency"),
        ({"type": "agency", "company_id": "co-1", "role": "user"}, "not_agency_admin"),
        ({"type": "agency", "company_id": "co-unknown"}, "not_installed"),
    ],
)
async def test_anyone_but_an_installed_agencys_admin_is_refused(
    agency: Harness, context: dict[str, str], code: str
):
    response = await open_page(agency, **context)

    assert response.status_code == 403
    assert f'data-error-code="{code}"' in response.text and listed(response.text) == []


async def test_a_payload_not_sealed_with_the_shared_secret_is_refused(agency: Harness):
    payload = sso_payload(user_context(None, type="agency", company_id="co-1"), key="wrong")
    async with httpx.AsyncClient(base_url=agency.url, timeout=10) as client:
        response = await client.post("/agency/sso", data={"payload": payload})

    assert response.status_code == 401 and listed(response.text) == []
