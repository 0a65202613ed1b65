"""The settings page's message log: the signed-in sub-account's messages only (admins and
users alike), searched like the admin API's log, paged with "Older messages"."""

import re

import pytest

from app.devkit.harness import Harness
from tests.e2e.test_message_log import OTHER, received, seed_log, sent
from tests.e2e.test_settings_page import hidden, post, sign_in
from tests.support.cryptojs import SSO_KEY


@pytest.fixture
async def page(harness: Harness) -> Harness:
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    await harness.seed_installation()
    await harness.with_store(seed_log)
    harness.start()
    return harness


def rows(page_html: str) -> list[str]:
    """Each listed message's row, newest first."""
    return re.findall(r'<tr data-status="\w+" data-direction="\w+">(.*?)</tr>', page_html, re.S)


async def search(h: Harness, session: str, **fields: str):
    form = {"session": session, **{f"log_{name}": value for name, value in fields.items()}}
    return await post(h, "/settings/messages", form)


async def test_the_page_lists_only_its_own_locations_messages_both_ways(page: Harness):
    response, _ = await sign_in(page)

    listed = rows(response.text)
    assert len(listed) == 3
    assert (
        "Promo" in listed[0] and "Thanks, ORDER received" in listed[1] and "Your order" in listed[2]
    )
    assert "Other sub-account" not in response.text and "who is this" not in response.text
    assert "********4567" in listed[1] and "9171234567" not in response.text


async def test_a_user_who_is_not_an_admin_searches_too(page: Harness):
    _, session = await sign_in(page, role="user")

    response = await search(page, session, q="order", phone="+63 917 123 4567")

    assert response.status_code == 200
    listed = rows(response.text)
    assert len(listed) == 2 and "Thanks, ORDER received" in listed[0]
    assert 'value="order"' in response.text  # the search stays in the form


async def test_the_search_never_reaches_another_locations_messages(page: Harness):
    _, session = await sign_in(page)

    response = await search(page, session, q="Other sub-account", location_id=OTHER)

    assert rows(response.text) == [] and 'id="no-messages"' in response.text


async def test_older_messages_page_through_the_whole_log_without_repeats(harness: Harness):
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    await harness.seed_installation()

    async def many(store):
        for i in range(30):
            await sent(store, f"m-{i:02d}", 1_800_000_000.0 + i, text=f"message {i:02d}")
        await received(store, "r-x", 1_800_000_000.5, text="reply x")

    await harness.with_store(many)
    harness.start()
    first, session = await sign_in(harness)

    older = await post(
        harness,
        "/settings/messages",
        {"session": session, "log_cursor": hidden(first.text, "log_cursor")},
    )

    texts = [re.search(r"(message \d\d|reply x)", row).group(1) for row in rows(first.text)]
    texts += [re.search(r"(message \d\d|reply x)", row).group(1) for row in rows(older.text)]
    assert len(texts) == 31 and len(set(texts)) == 31
    assert texts[0] == "message 29" and texts[-1] == "message 00"
    assert 'id="older"' in first.text and 'id="older"' not in older.text


async def test_a_bad_search_field_is_a_400_marking_that_field(page: Harness):
    _, session = await sign_in(page)

    response = await search(page, session, phone="12345")

    assert response.status_code == 400
    assert re.search(r'id="log_phone"[^>]*aria-invalid="true"', response.text)
    assert 'data-error-code="invalid_query"' in response.text
    assert len(rows(response.text)) == 3  # the unfiltered first page, still readable
