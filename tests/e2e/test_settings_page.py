"""The per-location settings page over HTTP: SSO sign-in, settings applied to sends, test SMS."""

import asyncio
import html
import re

import httpx
import pytest

from app.devkit.harness import CAST_KEY, CIPHER, LOCATION, Harness, webhook
from app.inbound.repository import RecipientDirectory
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.optouts.repository import OptOutList
from app.optouts.schemas import OptOut
from app.store import Store
from tests.e2e.test_oauth import app_event, post_app
from tests.support.cryptojs import SSO_KEY, sso_payload, user_context

OWN_KEY = "cast_" + "5e77" * 16
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Accept": "application/json"}
GHL_ORIGINS = (
    "https://app.gohighlevel.com https://*.gohighlevel.com "
    "https://app.leadconnectorhq.com https://*.leadconnectorhq.com"
)


@pytest.fixture
async def page(harness: Harness) -> Harness:
    """A running bridge with the SSO key set and an installed location."""
    harness.env["GHL_APP_SSO_KEY"] = SSO_KEY
    harness.cast.api_keys.add(OWN_KEY)
    await harness.seed_installation()
    harness.start()
    return harness


def hidden(page_html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page_html)
    assert found, f"no hidden field {name}"
    return html.unescape(found.group(1))


async def post(h: Harness, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.post(path, data=data, headers=headers)


async def sign_in(h: Harness, **context: object) -> tuple[httpx.Response, str]:
    response = await post(h, "/settings/sso", {"payload": sso_payload(user_context(**context))})
    assert response.status_code == 200, response.text
    return response, hidden(response.text, "session")


async def save(h: Harness, session: str, **fields: str) -> httpx.Response:
    return await post(h, "/settings/save", {"session": session, **fields})


async def test_the_page_for_ghl_asks_the_parent_window_for_the_user(page: Harness):
    async with httpx.AsyncClient(base_url=page.url) as client:
        shell = await client.get("/settings")
        script = await client.get("/settings/static/settings.js")

    assert shell.status_code == 200
    assert 'action="/settings/sso"' in shell.text and "/settings/static/settings.js" in shell.text
    assert "x-frame-options" not in shell.headers  # GHL embeds it
    assert "form-action 'self'" in shell.headers["content-security-policy"]
    assert shell.headers["content-security-policy"].endswith(f"; frame-ancestors {GHL_ORIGINS}")
    assert f'data-frame-origins="{GHL_ORIGINS}"' in shell.text
    assert '"REQUEST_USER_DATA"' in script.text and "REQUEST_USER_DATA_RESPONSE" in script.text


async def test_a_valid_sso_payload_opens_the_locations_settings(page: Harness):
    response, session = await sign_in(page)

    assert LOCATION in response.text and "Maria Santos" in response.text
    assert 'data-state="connected"' in response.text
    assert "the app's default Cast account" in response.text
    assert session and response.headers["cache-control"] == "no-store"


async def test_an_agency_user_in_the_sub_account_may_sign_in(page: Harness):
    await sign_in(page, type="agency", role="admin")


async def test_an_absent_or_invalid_sso_payload_is_refused(page: Harness):
    absent = await post(page, "/settings/sso", {})
    garbage = await post(page, "/settings/sso", {"payload": "bm90IGEgcGF5bG9hZA=="})
    other_key = await post(
        page, "/settings/sso", {"payload": sso_payload(user_context(), key="not-the-key")}
    )
    as_json = await post(page, "/settings/sso", {"payload": "x"}, **JSON)

    assert [r.status_code for r in (absent, garbage, other_key, as_json)] == [401] * 4
    assert 'name="session"' not in garbage.text + other_key.text
    assert 'data-error-code="sso_required"' in absent.text
    assert as_json.json() == {
        "error": {
            "code": "invalid_sso",
            "message": "The GHL user context could not be verified",
            "field": "payload",
        }
    }


async def test_a_user_context_without_an_active_location_is_refused(page: Harness):
    response = await post(page, "/settings/sso", {"payload": sso_payload(user_context(None))})

    assert response.status_code == 403
    assert 'data-error-code="no_location"' in response.text


async def test_a_user_of_another_agency_is_refused(page: Harness):
    payload = sso_payload(user_context(company_id="company-other"))
    response = await post(page, "/settings/sso", {"payload": payload})

    assert response.status_code == 403


async def test_a_user_context_without_a_company_is_refused(page: Harness):
    context = {k: v for k, v in user_context().items() if k != "companyId"}
    response = await post(page, "/settings/sso", {"payload": sso_payload(context)})

    assert response.status_code == 403
    assert 'data-error-code="no_company"' in response.text and 'name="session"' not in response.text


async def test_a_location_without_the_app_installed_gets_no_settings_page(page: Harness):
    payload = sso_payload(user_context("loc-not-installed"))
    response = await post(page, "/settings/sso", {"payload": payload})

    assert response.status_code == 403
    assert 'data-error-code="not_installed"' in response.text
    assert "not installed" in response.text and 'name="session"' not in response.text


async def test_after_uninstall_an_open_page_can_neither_view_save_nor_send(page: Harness):
    response, session = await sign_in(page)
    nonce = hidden(response.text, "nonce")
    uninstalled = await post_app(page, app_event("UNINSTALL", locationId=LOCATION))
    assert uninstalled.json()["status"] == "uninstalled"

    viewed = await post(page, "/settings/view", {"session": session})
    saved = await save(page, session, sender_id="AFTER", api_key=OWN_KEY, enabled="1")
    tested = await post(
        page, "/settings/test-sms", {"session": session, "phone": "09175550104", "nonce": nonce}
    )
    fresh = await post(page, "/settings/sso", {"payload": sso_payload(user_context())})

    for refused in (viewed, saved, tested, fresh):
        assert refused.status_code == 403 and 'data-error-code="not_installed"' in refused.text
        assert "Cast SMS is not installed" in refused.text
    assert await page.with_store(lambda store: store.get_doc("location_settings", LOCATION)) is None
    await asyncio.sleep(0.5)
    assert page.cast.sent_to("09175550104") == []


async def test_a_user_who_is_not_an_admin_sees_the_page_read_only(page: Harness):
    response, _ = await sign_in(page, role="user")

    assert 'id="read-only"' in response.text
    assert re.search(r'<fieldset id="account-fields"\s+disabled>', response.text)
    assert 'id="save"' not in response.text and 'id="test-form"' not in response.text
    assert 'id="refresh"' in response.text


async def test_a_user_who_is_not_an_admin_cannot_change_the_key_or_send_a_test(page: Harness):
    _, session = await sign_in(page, role="user")
    form = {"session": session, "phone": "09175550105", "nonce": "a-forged-nonce"}

    saved = await post(
        page, "/settings/save", {"session": session, "api_key": OWN_KEY, "enabled": "1"}, **JSON
    )
    tested = await post(page, "/settings/test-sms", form, **JSON)
    await page.post(webhook("m-after-user"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    assert [saved.status_code, tested.status_code] == [403, 403]
    assert saved.json()["error"]["code"] == tested.json()["error"]["code"] == "admin_required"
    assert [sms["key"] for sms in page.cast.sent] == [CAST_KEY]


async def test_saved_settings_apply_to_the_next_outbound_message(page: Harness):
    _, session = await sign_in(page)
    saved = await save(page, session, sender_id="MYBRAND", api_key=OWN_KEY, enabled="1")
    await page.post(webhook("m-own-account"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    assert saved.status_code == 200 and 'id="notice"' in saved.text
    (sms,) = page.cast.sent
    assert (sms["key"], sms["sender_id"]) == (OWN_KEY, "MYBRAND")
    await page.wait_for(lambda: page.statuses_for("m-own-account"), what="status at GHL")


async def test_the_key_is_never_shown_in_full(page: Harness):
    _, session = await sign_in(page)
    saved = await save(page, session, sender_id="MYBRAND", api_key=OWN_KEY, enabled="1")
    _, session = await sign_in(page)
    viewed = await post(page, "/settings/view", {"session": session})

    for response in (saved, viewed):
        assert OWN_KEY not in response.text and OWN_KEY[5:] not in response.text
        assert "cast_…5e77" in response.text
    assert OWN_KEY not in page.logs()


async def test_disabled_settings_fall_back_to_the_default_account(page: Harness):
    _, session = await sign_in(page)
    await save(page, session, sender_id="MYBRAND", api_key=OWN_KEY)  # "enabled" unticked
    await page.post(webhook("m-disabled"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    (sms,) = page.cast.sent
    assert (sms["key"], sms["sender_id"]) == (CAST_KEY, "CASTTEST")


async def test_removing_the_key_but_keeping_an_unassigned_sender_is_refused_and_changes_nothing(
    page: Harness,
):
    _, session = await sign_in(page)
    await save(page, session, sender_id="MYBRAND", api_key=OWN_KEY, enabled="1")
    refused = await save(page, session, sender_id="MYBRAND", enabled="1", remove_api_key="1")
    removed = await save(page, session, sender_id="", enabled="1", remove_api_key="1")
    await page.post(webhook("m-removed"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    assert refused.status_code == 422 and "MYBRAND is not assigned to this sub-account" in (
        html.unescape(refused.text)
    )
    assert "cast_…5e77" in refused.text  # the key is still stored
    assert removed.status_code == 200 and "none (the app's default account)" in removed.text
    (sms,) = page.cast.sent
    assert (sms["key"], sms["sender_id"]) == (CAST_KEY, "CASTTEST")


async def test_a_form_without_a_valid_session_is_refused_and_changes_nothing(page: Harness):
    forged = await save(page, "forged.token", sender_id="EVIL", api_key=OWN_KEY, enabled="1")
    missing = await post(page, "/settings/save", {"sender_id": "EVIL"}, **JSON)
    await page.post(webhook("m-after-forgery"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    assert forged.status_code == 401 and 'name="session"' not in forged.text
    assert missing.status_code == 401 and missing.json()["error"]["field"] == "session"
    assert page.cast.sent[0]["sender_id"] == "CASTTEST"


async def test_an_expired_session_is_refused(harness: Harness):
    harness.env.update(GHL_APP_SSO_KEY=SSO_KEY, SETTINGS_SESSION_SECONDS="1")
    await harness.seed_installation()
    harness.start()
    _, session = await sign_in(harness)
    await asyncio.sleep(1.1)

    response = await post(harness, "/settings/save", {"session": session}, **JSON)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sender_id": "TWELVE CHARS"}, "sender_id"),
        ({"sender_id": "BAD-ID!"}, "sender_id"),
        ({"api_key": "sk_live_123456789"}, "api_key"),
    ],
    ids=["too-long", "punctuation", "not-a-cast-key"],
)
async def test_invalid_settings_are_a_422_naming_the_field(
    page: Harness, fields: dict[str, str], field: str
):
    _, session = await sign_in(page)

    as_page = await save(page, session, **fields)
    as_json = await post(page, "/settings/save", {"session": session, **fields}, **JSON)

    assert as_page.status_code == 422
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', as_page.text, re.S)
    assert as_json.status_code == 422 and as_json.json()["error"]["field"] == field
    _, session = await sign_in(page)  # nothing was saved
    viewed = await post(page, "/settings/view", {"session": session})
    assert 'id="sending-with">the app\'s default Cast account' in viewed.text


async def test_a_test_sms_is_sent_with_the_locations_settings_and_not_reported_to_ghl(
    page: Harness,
):
    _, session = await sign_in(page)
    saved = await save(page, session, sender_id="MYBRAND", api_key=OWN_KEY, enabled="1")
    nonce = hidden(saved.text, "nonce")

    queued = await post(
        page, "/settings/test-sms", {"session": session, "phone": "0917 555 0101", "nonce": nonce}
    )
    await page.wait_for(lambda: page.cast.sent_to("09175550101"), what="test SMS at Cast")
    message_id = f"settings-test:{LOCATION}:{nonce}"

    assert queued.status_code == 200 and "Test SMS queued" in queued.text
    (sms,) = page.cast.sent_to("09175550101")
    assert (sms["key"], sms["sender_id"]) == (OWN_KEY, "MYBRAND")
    for _ in range(300):  # until the worker is done with it (up to 15 s)
        stored = await page.message(message_id)
        if stored is not None and stored.status is not None:
            break
        await asyncio.sleep(0.05)
    assert stored is not None and stored.synthetic and stored.status == "delivered"
    await asyncio.sleep(0.3)
    assert page.statuses_for(message_id) == [] and not any(
        r.get("message_id") == message_id for r in page.ghl.status_requests
    )


async def test_a_test_sms_never_makes_the_location_the_one_replies_go_to(page: Harness):
    response, session = await sign_in(page)
    form = {"session": session, "phone": "09175550103", "nonce": hidden(response.text, "nonce")}

    await post(page, "/settings/test-sms", form)
    await page.wait_for(lambda: page.cast.sent_to("09175550103"), what="test SMS at Cast")
    message_id = f"settings-test:{LOCATION}:{form['nonce']}"
    for _ in range(300):  # until the worker is done with it (up to 15 s)
        stored = await page.message(message_id)
        if stored is not None and stored.status is not None:
            break
        await asyncio.sleep(0.05)

    senders = await page.with_store(
        lambda store: RecipientDirectory(store, 86_400).senders("+639175550103", 0)
    )
    assert stored is not None and stored.status == "delivered" and senders == []


async def test_a_double_submitted_test_sms_is_sent_once(page: Harness):
    response, session = await sign_in(page)
    form = {"session": session, "phone": "09175550102", "nonce": hidden(response.text, "nonce")}

    first = await post(page, "/settings/test-sms", form)
    second = await post(page, "/settings/test-sms", form)
    await page.wait_for(lambda: page.cast.sent_to("09175550102"), what="test SMS at Cast")
    await asyncio.sleep(0.5)

    assert "Test SMS queued" in first.text and "already queued" in second.text
    assert len(page.cast.sent_to("09175550102")) == 1


async def test_concurrent_test_sms_posts_never_exceed_the_limit(page: Harness):
    _, session = await sign_in(page)
    forms = [
        {"session": session, "phone": f"091755502{i:02d}", "nonce": f"concurrent-{i:02d}"}
        for i in range(12)
    ]

    answers = await asyncio.gather(*(post(page, "/settings/test-sms", f) for f in forms))

    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 7
    await page.wait_for(lambda: len(page.cast.sent) >= 5, what="5 test SMS at Cast")
    await asyncio.sleep(0.5)
    assert len(page.cast.sent) == 5


async def test_a_test_sms_to_an_invalid_number_is_a_422_naming_phone(page: Harness):
    response, session = await sign_in(page)
    form = {"session": session, "phone": "+1 555 123 4567", "nonce": hidden(response.text, "nonce")}

    refused = await post(page, "/settings/test-sms", form)

    assert refused.status_code == 422
    assert re.search(r'id="phone"[^>]*aria-invalid="true"', refused.text, re.S)
    assert "not a Philippine number" in refused.text


async def test_recent_messages_show_masked_numbers_statuses_reasons_and_totals(page: Harness):
    await page.post(webhook("m-ok", phone="+639171230001"))
    await page.post(webhook("m-bad", phone="+15551230002"))
    await page.wait_for(lambda: page.statuses_for("m-ok"), what="m-ok reported")
    await page.wait_for(lambda: page.statuses_for("m-bad"), what="m-bad reported")

    response, _ = await sign_in(page)

    rows = re.findall(r'<tr data-status="(\w+)"[^>]*>(.*?)</tr>', response.text, re.S)
    assert [status for status, _ in rows] == ["failed", "delivered"]  # newest first
    failed, delivered = (cells for _, cells in rows)
    assert "*******0002" in failed and "not a Philippine number" in failed
    assert "********0001" in delivered
    assert "+639171230001" not in response.text and "15551230002" not in response.text
    totals = re.search(r"Last 24 hours</th>(.*?)</tr>", response.text, re.S)
    assert totals is not None
    assert re.findall(r"<td[^>]*>(\d+\+?)</td>", totals.group(1)) == ["1", "1", "0", "2"]


async def test_without_an_sso_key_the_page_says_it_is_not_configured(harness: Harness):
    harness.start()

    async with httpx.AsyncClient(base_url=harness.url) as client:
        shell = await client.get("/settings")
    sign = await post(harness, "/settings/sso", {"payload": sso_payload()}, **JSON)

    assert shell.status_code == 503 and "GHL_APP_SSO_KEY" in shell.text
    assert sign.status_code == 503 and sign.json()["error"]["code"] == "sso_not_configured"


async def test_the_page_says_which_kind_of_sender_is_in_use_and_refuses_an_unapproved_one(
    page: Harness,
):
    page.cast.approve(CAST_KEY, "CASTTEST", "sms")
    page.cast.approve(OWN_KEY, "MYBRAND", "sms")
    page.cast.approve(OWN_KEY, "+639170000001", "sim")
    opened, session = await sign_in(page)

    refused = await save(page, session, sender_id="NOPE", api_key=OWN_KEY, enabled="1")
    saved = await save(page, session, sender_id="0917 000 0001", api_key=OWN_KEY, enabled="1")

    assert 'data-channel="sms"' in opened.text and "customers cannot reply" in opened.text
    assert refused.status_code == 422
    assert "NOPE is not approved for this Cast account; approved: MYBRAND (sms), " in refused.text
    assert saved.status_code == 200
    assert "Sender ID: +639170000001. Cast approved it for the sim channel." in saved.text
    assert 'data-channel="sim"' in saved.text and "replies land in the conversation" in saved.text


async def test_the_page_shows_how_many_recipients_opted_out(page: Harness):
    async def seed(store: Store) -> None:
        for phone in ("+639171234567", "+639181110000"):
            optout = OptOut(
                location_id=LOCATION, phone=phone, source="keyword", at=1.8e9, recorded_at=1.8e9
            )
            assert await OptOutList(store).add(optout)

    await page.with_store(seed)

    signed_in, _ = await sign_in(page)

    assert re.search(r'id="opted-out">2 \(replied STOP', signed_in.text)
    assert "a recipient who replied STOP stays opted out until they reply START" in signed_in.text
    assert "9171234567" not in signed_in.text


async def test_out_of_credits_fails_at_once_and_the_page_shows_it_until_a_send_works(
    page: Harness,
):
    _, session = await sign_in(page)
    await save(page, session, api_key=OWN_KEY, enabled="1")
    page.cast.charge, page.cast.credits = True, 0
    reason = "The Cast account is out of credits — top it up, then resend"

    await page.post(webhook("m-broke"))
    await page.wait_for(lambda: page.statuses_for("m-broke"), what="status at GHL")
    broken, session = await sign_in(page)
    page.cast.credits = 100
    await page.post(webhook("m-topped-up", phone="+639181234567"))
    await page.wait_for(lambda: page.statuses_for("m-topped-up"), what="status at GHL")
    healthy = await post(page, "/settings/view", {"session": session})

    assert page.statuses_for("m-broke") == [
        {
            "status": "failed",
            "error": {"code": "INSUFFICIENT_CREDITS", "type": "saas", "message": reason},
        }
    ]
    assert [r["status"] for r in page.cast.requests] == [402, 200]  # not retried
    assert 'id="account-state"' in broken.text and reason in html.unescape(broken.text)
    assert 'id="account-state"' not in healthy.text


async def test_the_page_shows_balance_warning_approved_senders_and_usage(page: Harness):
    page.cast.credits, page.cast.billing_type = 120, "postpaid"
    page.cast.approve(OWN_KEY, "MYBRAND", "sms")
    page.cast.approve(OWN_KEY, "+639170000001", "sim")
    page.cast.usage_days = [{"date": "2026-11-30", "total": 9, "sent": 8, "failed": 1, "parts": 12}]
    _, session = await sign_in(page)

    await save(page, session, api_key=OWN_KEY, enabled="1")  # the page after: the cold read
    warm = await post(page, "/settings/view", {"session": session})
    async with httpx.AsyncClient(base_url=page.url) as client:
        metrics = (await client.get("/metrics")).text

    assert 'data-credits="120"' in warm.text and "Postpaid" in warm.text
    assert 'id="low-credit"' in warm.text and "below the warning level of 500" in warm.text
    assert '<option value="+639170000001">' in warm.text and 'list="sender-choices"' in warm.text
    assert 'id="usage-chart"' in warm.text and re.search(
        r"<td[^>]*>8</td><td[^>]*>1</td><td[^>]*>12</td>", warm.text
    )
    assert 'bridge_cast_credits{key="' in metrics and "} 120.0" in metrics
    assert sorted(page.cast.account_requests).count("balance") == 1  # the warm view: cached


async def test_a_location_sets_its_own_low_credit_warning(page: Harness):
    page.cast.credits = 800
    _, session = await sign_in(page)

    saved = await save(page, session, low_credit_threshold="1000", api_key=OWN_KEY, enabled="1")

    assert saved.status_code == 200
    assert "below the warning level of 1000" in saved.text


# Tenants on the operator's default account (issue 28) ----------------------------------------

OTHER_AGENCY_SIM, OUR_SIM = "+639170000001", "+639170000002"


async def seed_settings(h: Harness, **fields: object) -> None:
    settings = LocationSettings.model_validate(
        {"location_id": LOCATION, "updated_at": 1.0, **fields}
    )
    await h.with_store(lambda store: LocationSettingsRepository(store, CIPHER).put(settings))


async def stored_settings(h: Harness) -> LocationSettings | None:
    return await h.with_store(lambda store: LocationSettingsRepository(store, CIPHER).get(LOCATION))


async def test_a_default_account_location_sees_nothing_of_the_operators_cast_account(
    page: Harness,
):
    page.cast.credits = 120
    page.cast.approve(CAST_KEY, "CASTTEST", "sms")
    page.cast.approve(CAST_KEY, OTHER_AGENCY_SIM, "sim")
    await seed_settings(page, assigned_senders=[OUR_SIM])

    opened, _ = await sign_in(page, role="user")

    assert 'id="credits"' not in opened.text and 'id="low-credit"' not in opened.text
    assert 'id="usage-chart"' not in opened.text and 'id="approved-senders"' not in opened.text
    assert OTHER_AGENCY_SIM not in opened.text
    assert re.search(r'id="assigned-senders"><code>\+639170000002</code>', opened.text)
    assert 'id="totals"' in opened.text  # its own figures, from the bridge's records
    assert not {"balance", "profile", "usage"} & set(page.cast.account_requests)


async def test_a_location_chooses_only_among_the_senders_the_operator_assigned_it(
    page: Harness,
):
    page.cast.approve(CAST_KEY, OTHER_AGENCY_SIM, "sim")
    page.cast.approve(CAST_KEY, OUR_SIM, "sim")
    await seed_settings(page, assigned_senders=[OUR_SIM])
    opened, session = await sign_in(page)

    refused = await save(page, session, sender_id=OTHER_AGENCY_SIM, enabled="1")
    after_refusal = await stored_settings(page)
    saved = await save(page, session, sender_id="0917 000 0002", enabled="1")
    await page.post(webhook("m-assigned"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    assert f'<option value="{OUR_SIM}">' in opened.text
    assert f'<option value="{OTHER_AGENCY_SIM}">' not in opened.text
    assert refused.status_code == 422
    assert f"{OTHER_AGENCY_SIM} is not assigned to this sub-account" in html.unescape(refused.text)
    assert after_refusal is not None and after_refusal.sender_id is None  # nothing saved
    assert saved.status_code == 200
    (sms,) = page.cast.sent
    assert (sms["key"], sms["sender_id"]) == (CAST_KEY, OUR_SIM)


async def test_an_unassigned_default_account_sender_is_never_used_to_send(page: Harness):
    await seed_settings(page, sender_id=OTHER_AGENCY_SIM)  # stored before assignments existed

    await page.post(webhook("m-unassigned"))
    await page.wait_for(lambda: page.cast.sent, what="send at Cast")

    (sms,) = page.cast.sent
    assert (sms["key"], sms["sender_id"]) == (CAST_KEY, "CASTTEST")


async def test_a_key_cast_refuses_is_refused_and_nothing_is_saved(page: Harness):
    _, session = await sign_in(page)

    refused = await save(page, session, api_key="cast_" + "0bad" * 16, enabled="1")
    as_json = await post(
        page,
        "/settings/save",
        {"session": session, "api_key": "cast_" + "0bad" * 16, "enabled": "1"},
        **JSON,
    )

    assert refused.status_code == 422 and "Cast refuses this API key" in refused.text
    assert as_json.json()["error"]["code"] == "cast_key_refused"
    assert as_json.json()["error"]["field"] == "api_key"
    assert await stored_settings(page) is None


async def test_thirty_views_with_a_refused_key_cost_at_most_three_cast_calls(page: Harness):
    refused_key = "cast_" + "dead" * 16
    await seed_settings(page, cast_api_key=refused_key)
    _, session = await sign_in(page)

    views = await asyncio.gather(
        *(post(page, "/settings/view", {"session": session}) for _ in range(29))
    )

    calls = page.cast.refused_account_requests + page.cast.account_requests
    assert len(calls) <= 3, calls
    statuses = sorted(view.status_code for view in views)
    assert statuses.count(200) <= 19 and 429 in statuses  # 20 views per 10 s, sign-in included
    assert "Opened too often" in next(v.text for v in views if v.status_code == 429)
