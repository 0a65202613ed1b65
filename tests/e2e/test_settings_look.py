"""What the settings page shows around its figures: the sub-account's name, a neutral
read-only banner, the way to install from the "not installed" page."""

import re

import pytest

from app.devkit.harness import LOCATION, Harness
from app.overview.repository import LocationNames
from tests.e2e.test_settings_page import post, sign_in
from tests.support.cryptojs import SSO_KEY, sso_payload, user_context


@pytest.fixture
async def page(harness: Harness) -> Harness:
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    await harness.seed_installation()
    harness.start()
    return harness


async def test_the_read_only_banner_is_neutral_not_styled_as_a_success(page: Harness):
    response, _ = await sign_in(page, role="user")

    assert re.search(r'<p class="info" id="read-only"', response.text)
    assert 'class="notice" id="read-only"' not in response.text


async def test_the_not_installed_page_links_to_the_install(page: Harness):
    payload = sso_payload(user_context("loc-not-installed"))

    response = await post(page, "/settings/sso", {"payload": payload})

    assert response.status_code == 403
    assert re.search(r'id="install-link"><a href="/oauth/install" target="_top"', response.text)


async def test_the_header_names_the_sub_account_once_ghl_named_it(page: Harness):
    await page.with_store(
        lambda s: LocationNames(s).remember("company-1", {LOCATION: "Acme PH"}, 1)
    )

    response, _ = await sign_in(page)

    assert '<strong id="location-name">Acme PH</strong>' in response.text
    assert f"<code>{LOCATION}</code>" in response.text
