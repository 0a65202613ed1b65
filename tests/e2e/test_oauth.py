"""OAuth install and token lifecycle end to end: the bridge process, a fake GHL over real HTTP."""

import asyncio
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pymongo import MongoClient

from app.devkit.harness import ENCRYPTION_KEY, LOCATION, Harness, webhook
from app.ghl.scopes import AGENCY_ONLY_SCOPES, DEFAULT_SCOPES
from app.oauth.crypto import TokenCipher
from app.oauth.repository import (
    COLLECTION,
    LOCATION_SETTINGS,
    InstallationRepository,
    company_key,
    location_key,
)
from app.oauth.schemas import Installation
from app.store import Store

APP_ID = "test"  # the part of CLIENT_ID ("test-client-id") before the first "-"
CIPHER = TokenCipher(ENCRYPTION_KEY.encode())
NEXT_STEPS = "Settings → Phone Numbers → Advanced Settings → SMS Provider"
SCOPES = DEFAULT_SCOPES
LOCATION_SCOPES = [scope for scope in SCOPES.split() if scope not in AGENCY_ONLY_SCOPES]


# Helpers ------------------------------------------------------------------------------------
async def seed(
    h: Harness, location_id: str = LOCATION, *, expires_in: float = 86399
) -> dict[str, Any]:
    """Store a location installation whose token expires in `expires_in` seconds."""
    return await h.seed_pair(location_id, expires_in=expires_in)


async def installation(h: Harness, key: str) -> Installation | None:
    found = await h.with_store(lambda store: InstallationRepository(store, CIPHER).get(key))
    return found[0] if found else None


async def get(h: Harness, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.get(path, params=params)


async def start_install(h: Harness, path: str = "/oauth/install") -> dict[str, str]:
    """Follow the install link: the query GHL's chooser would receive."""
    response = await get(h, path)
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def app_event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "appId": APP_ID,
        "versionId": "v-1",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "webhookId": uuid.uuid4().hex,
        **fields,
    }


async def post_app(h: Harness, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return await h.post(payload, path="/webhooks/ghl/app", **kwargs)


async def install_agency(
    h: Harness, company: str = "co-1", approved: list[str] | None = None
) -> httpx.Response:
    h.ghl.add_code(
        "agency-code",
        None,
        company_id=company,
        user_type="Company",
        userType="Company",
        isBulkInstallation=True,
        approvedLocations=approved or [],
    )
    return await get(h, "/oauth/callback", code="agency-code")


def shutdown_counters(log_text: str) -> dict[str, int]:
    """The counters a bridge logged when it stopped."""
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "shutdown complete"][-1]["counters"]


def raw_bytes(store_env: dict[str, str], key: str) -> bytes:
    """The installation document exactly as the database holds it, bypassing the app."""
    if store_env.get("MONGO_URI"):
        with MongoClient(store_env["MONGO_URI"]) as client:
            doc = client[store_env["MONGO_DB"]][COLLECTION].find_one({"_id": key})
        return json.dumps(doc, default=str).encode()
    path = Path(store_env["DATA_DIR"]) / "cast-ghl.sqlite3"
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT data FROM docs WHERE collection = ? AND id = ?", (COLLECTION, key)
        ).fetchone()
    return row[0].encode() if row else b""


# The install link ---------------------------------------------------------------------------
async def test_the_install_link_redirects_to_the_location_chooser(harness: Harness):
    harness.start()
    response = await get(harness, "/oauth/install")

    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        "marketplace.gohighlevel.com",
        "/v2/oauth/chooselocation",
    )
    query = parse_qs(target.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["test-client-id"]
    assert query["redirect_uri"] == ["http://127.0.0.1/oauth/callback"]
    assert query["scope"] == [SCOPES]
    assert len(query["state"][0]) > 40


async def test_the_go_bridge_paths_and_a_registered_redirect_uri_keep_working(harness: Harness):
    harness.env["GHL_REDIRECT_URI"] = "https://hl.cast.ph/oauth-callback"
    harness.env["GHL_AUTHORIZE_PATH"] = "/oauth/chooselocation"
    harness.start()
    query = await start_install(harness, "/install")
    harness.ghl.add_code("code-go", LOCATION)

    page = await get(harness, "/oauth-callback", code="code-go", state=query["state"])

    assert query["redirect_uri"] == "https://hl.cast.ph/oauth-callback"
    response = await get(harness, "/install")
    assert urlsplit(response.headers["location"]).path == "/oauth/chooselocation"
    assert page.status_code == 200
    assert harness.ghl.code_calls()[0]["redirect_uri"] == "https://hl.cast.ph/oauth-callback"


# The callback ---------------------------------------------------------------------------------
async def test_the_callback_stores_the_location_and_explains_the_next_step(harness: Harness):
    harness.start()
    query = await start_install(harness)
    harness.ghl.add_code("code-1", "loc-new")

    page = await get(harness, "/oauth/callback", code="code-1", state=query["state"])

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "loc-new" in page.text and NEXT_STEPS in page.text and "Cast SMS" in page.text
    assert "access-" not in page.text and "refresh-" not in page.text
    (exchange,) = harness.ghl.code_calls()
    assert exchange == {
        "client_id": "test-client-id",
        "client_secret": "test-secret",
        "grant_type": "authorization_code",
        "code": "code-1",
        "user_type": "Location",
        "redirect_uri": "http://127.0.0.1/oauth/callback",
    }
    stored = await installation(harness, location_key("loc-new"))
    assert stored is not None and stored.kind == "location" and stored.company_id == "company-1"
    assert (
        sorted(stored.scopes) == sorted(LOCATION_SCOPES)
        and stored.expires_at > time.time() + 80_000
    )


async def test_messages_of_a_freshly_installed_location_use_its_token(harness: Harness):
    harness.start()
    harness.ghl.add_code("code-msg", LOCATION)
    await get(harness, "/oauth/callback", code="code-msg")

    await harness.post(webhook("m-after-install"))

    await harness.wait_for(lambda: harness.statuses_for("m-after-install"), what="status")
    stored = await installation(harness, location_key(LOCATION))
    (entry,) = [s for s in harness.ghl.statuses if s["message_id"] == "m-after-install"]
    assert stored is not None and entry["token"] == stored.access_token


async def test_a_marketplace_install_without_our_state_is_accepted(harness: Harness):
    harness.start()
    harness.ghl.add_code("code-mkt", "loc-mkt")

    page = await get(harness, "/oauth-callback", code="code-mkt")

    assert page.status_code == 200 and "loc-mkt" in page.text
    assert await installation(harness, location_key("loc-mkt")) is not None


async def test_a_tampered_state_is_refused_and_nothing_is_exchanged(harness: Harness):
    harness.start()
    query = await start_install(harness)
    harness.ghl.add_code("code-t", "loc-t")
    payload, mac = query["state"].split(".")

    page = await get(harness, "/oauth/callback", code="code-t", state=f"{payload}x.{mac}")

    assert page.status_code == 400 and "not valid" in page.text
    assert harness.ghl.token_requests == []
    assert await installation(harness, location_key("loc-t")) is None
    assert "install refused: bad state" in harness.logs()


async def test_a_missing_code_is_a_clear_400_page(harness: Harness):
    harness.start()

    page = await get(harness, "/oauth/callback")

    assert page.status_code == 400 and "code" in page.text
    assert harness.ghl.token_requests == []


async def test_a_code_ghl_refuses_is_a_400_page_and_nothing_is_stored(harness: Harness):
    harness.start()

    page = await get(harness, "/oauth/callback", code="never-issued")

    assert page.status_code == 400 and "Start the installation again" in page.text
    assert len(harness.ghl.code_calls()) == 1
    assert await harness.with_store(lambda store: store.list_docs(COLLECTION)) == []
    assert "GHL refused the code" in harness.logs()


async def test_a_ghl_failure_at_the_exchange_is_a_502_page_and_nothing_is_stored(
    harness: Harness,
):
    harness.start()
    harness.ghl.add_code("code-500", "loc-500")
    harness.ghl.token_script.append(500)

    page = await get(harness, "/oauth/callback", code="code-500")

    assert page.status_code == 502 and "try the installation again" in page.text
    assert await installation(harness, location_key("loc-500")) is None
    assert "GHL token exchange error" in harness.logs()


async def test_missing_scopes_are_reported_on_the_page_and_in_the_logs(harness: Harness):
    harness.start()
    harness.ghl.add_code("code-scope", "loc-scope", scope="conversations/message.write")

    page = await get(harness, "/oauth/callback", code="code-scope")

    assert page.status_code == 200 and "contacts.write" in page.text
    assert "not granted" in page.text
    assert "installed without scopes the provider needs" in harness.logs()


# Agency (Company) installs --------------------------------------------------------------------
async def test_an_agency_install_stores_the_company_and_obtains_location_tokens(
    harness: Harness,
):
    harness.start()
    harness.ghl.installed["co-1"] = ["loc-a", "loc-b"]

    page = await install_agency(harness, approved=["loc-a"])

    assert page.status_code == 200 and "co-1" in page.text
    assert "loc-a" in page.text and "loc-b" in page.text
    company = await installation(harness, company_key("co-1"))
    assert company is not None and company.kind == "company" and company.user_type == "Company"
    assert sorted(company.location_ids) == ["loc-a", "loc-b"]
    assert sorted(r["locationId"] for r in harness.ghl.location_token_requests) == [
        "loc-a",
        "loc-b",
    ]
    assert {r["token"] for r in harness.ghl.location_token_requests} == {company.access_token}
    (listing,) = harness.ghl.installed_requests
    assert (listing["companyId"], listing["appId"], listing["isInstalled"]) == (
        "co-1",
        APP_ID,
        "true",
    )
    for loc in ("loc-a", "loc-b"):
        stored = await installation(harness, location_key(loc))
        assert stored is not None and stored.source == "company" and stored.company_id == "co-1"


async def test_a_location_of_an_agency_install_sends_with_its_own_location_token(
    harness: Harness,
):
    harness.start()
    harness.ghl.installed["co-1"] = [LOCATION]
    await install_agency(harness)

    await harness.post(webhook("m-agency"))

    await harness.wait_for(lambda: harness.statuses_for("m-agency"), what="status")
    stored = await installation(harness, location_key(LOCATION))
    (entry,) = [s for s in harness.ghl.statuses if s["message_id"] == "m-agency"]
    assert stored is not None and entry["token"] == stored.access_token


async def test_a_location_the_callback_missed_gets_its_token_when_first_needed(
    harness: Harness,
):
    harness.start()
    harness.ghl.installed["co-1"] = [LOCATION]
    harness.ghl.location_token_script.append(503)  # GHL hiccups during the install
    page = await install_agency(harness)
    assert "retried" in page.text and await installation(harness, location_key(LOCATION)) is None

    await harness.post(webhook("m-lazy"))

    await harness.wait_for(lambda: harness.statuses_for("m-lazy"), what="status")
    assert harness.statuses_for("m-lazy") == [{"status": "delivered"}]
    assert len(harness.ghl.location_token_requests) == 2


# App lifecycle webhooks -----------------------------------------------------------------------
async def test_an_install_webhook_for_a_new_location_obtains_its_token_from_the_agency(
    harness: Harness,
):
    harness.start()
    await install_agency(harness)

    response = await post_app(
        harness, app_event("INSTALL", installType="Location", locationId="loc-c", companyId="co-1")
    )

    assert response.status_code == 200 and response.json()["status"] == "installed"
    assert [r["locationId"] for r in harness.ghl.location_token_requests] == ["loc-c"]
    stored = await installation(harness, location_key("loc-c"))
    assert stored is not None and stored.company_id == "co-1"
    company = await installation(harness, company_key("co-1"))
    assert company is not None and company.location_ids == ["loc-c"]


async def test_an_install_webhook_before_the_callback_is_accepted_as_pending(harness: Harness):
    harness.start()

    response = await post_app(
        harness, app_event("INSTALL", installType="Location", locationId="loc-p", companyId="co-9")
    )

    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert harness.ghl.location_token_requests == []


async def test_a_repeated_app_webhook_is_harmless(harness: Harness):
    harness.start()
    await install_agency(harness)
    event = app_event("INSTALL", installType="Location", locationId="loc-r", companyId="co-1")

    first = await post_app(harness, event)
    second = await post_app(harness, event)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "duplicate"
    assert len(harness.ghl.location_token_requests) == 1


async def test_uninstall_deletes_the_location_tokens_and_settings(harness: Harness):
    await seed(harness)
    await harness.with_store(
        lambda store: store.put_doc(LOCATION_SETTINGS, LOCATION, {"cast_sender_id": "X"})
    )
    harness.start()

    response = await post_app(harness, app_event("UNINSTALL", locationId=LOCATION))

    assert response.status_code == 200 and response.json()["status"] == "uninstalled"
    assert await installation(harness, location_key(LOCATION)) is None

    async def settings_doc(store: Store) -> object:
        return await store.get_doc(LOCATION_SETTINGS, LOCATION)

    assert await harness.with_store(settings_doc) is None


async def test_an_agency_uninstall_deletes_the_company_and_its_location_tokens(
    harness: Harness,
):
    harness.start()
    harness.ghl.installed["co-1"] = ["loc-a"]
    await install_agency(harness)
    await seed(harness, "loc-own")  # installed by its own OAuth: not the agency's to delete

    response = await post_app(harness, app_event("UNINSTALL", companyId="co-1"))

    assert response.status_code == 200
    assert await installation(harness, company_key("co-1")) is None
    assert await installation(harness, location_key("loc-a")) is None
    assert await installation(harness, location_key("loc-own")) is not None


async def test_a_stale_app_webhook_is_refused(harness: Harness):
    harness.start()
    event = app_event("UNINSTALL", locationId=LOCATION, timestamp="2020-01-01T00:00:00.000Z")

    response = await post_app(harness, event)

    assert response.status_code == 401
    assert response.json()["error"]["field"] == "timestamp"


async def test_an_unsigned_app_webhook_is_refused(harness: Harness):
    await seed(harness)
    harness.start()

    response = await post_app(harness, app_event("UNINSTALL", locationId=LOCATION), scheme="none")

    assert response.status_code == 401
    assert await installation(harness, location_key(LOCATION)) is not None


async def test_an_app_webhook_for_another_app_is_ignored(harness: Harness):
    await seed(harness)
    harness.start()

    response = await post_app(harness, app_event("UNINSTALL", locationId=LOCATION, appId="other"))

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert await installation(harness, location_key(LOCATION)) is not None


async def test_an_app_webhook_without_a_webhook_id_repeated_is_known_by_its_body(
    harness: Harness,
):
    harness.start()
    await install_agency(harness)
    event = {"type": "INSTALL", "appId": APP_ID, "locationId": "loc-d", "companyId": "co-1"}

    first = await post_app(harness, event)
    second = await post_app(harness, event)

    assert (first.json()["status"], second.json()["status"]) == ("installed", "duplicate")
    assert len(harness.ghl.location_token_requests) == 1


# Refreshing -----------------------------------------------------------------------------------
async def test_a_token_expiring_within_five_minutes_is_refreshed_before_use(harness: Harness):
    old = await seed(harness, expires_in=200)
    harness.start()

    await harness.post(webhook("m-proactive"))

    await harness.wait_for(lambda: harness.statuses_for("m-proactive"), what="status")
    (refresh,) = harness.ghl.refresh_calls()
    assert refresh["refresh_token"] == old["refresh_token"]
    assert (refresh["user_type"], refresh["client_id"]) == ("Location", "test-client-id")
    (entry,) = [s for s in harness.ghl.status_requests if s["message_id"] == "m-proactive"]
    assert entry["token"] != old["access_token"]
    stored = await installation(harness, location_key(LOCATION))
    assert stored is not None and stored.access_token == entry["token"]
    assert stored.refresh_token != old["refresh_token"]


async def test_a_401_forces_one_refresh_and_one_retry_with_the_new_token(harness: Harness):
    old = await seed(harness)
    harness.ghl.revoke(old["access_token"])
    harness.start()

    await harness.post(webhook("m-401-retry"))

    await harness.wait_for(lambda: harness.statuses_for("m-401-retry"), what="status")
    attempts = [s["token"] for s in harness.ghl.status_requests if s["message_id"] == "m-401-retry"]
    assert len(harness.ghl.refresh_calls()) == 1
    assert len(attempts) == 2 and attempts[0] == old["access_token"] != attempts[1]


async def test_a_refused_refresh_needs_reauthorisation_and_the_next_install_heals_it(
    harness: Harness,
):
    old = await seed(harness, expires_in=-60)
    harness.ghl.spend_refresh_token(old["refresh_token"])
    harness.start()

    await harness.post(webhook("m-before"))

    async def flagged() -> bool:
        stored = await installation(harness, location_key(LOCATION))
        return stored is not None and stored.needs_reauth

    for _ in range(200):
        if await flagged():
            break
        await asyncio.sleep(0.05)
    assert await flagged()
    assert "needs re-authorisation" in harness.logs() and "invalid_grant" in harness.logs()

    await harness.post(webhook("m-refused"))

    async def refused_message() -> bool:
        message = await harness.message("m-refused")
        return message is not None and message.status == "failed"

    for _ in range(200):
        if await refused_message():
            break
        await asyncio.sleep(0.05)
    message = await harness.message("m-refused")
    assert message is not None and message.error_code == "REAUTHORIZATION_NEEDED"
    assert len(harness.cast.sent) == 1  # m-before only: m-refused never reached Cast
    assert len(harness.ghl.refresh_calls()) == 1

    harness.ghl.add_code("code-heal", LOCATION)
    page = await get(harness, "/oauth/callback", code="code-heal")
    assert page.status_code == 200
    healed = await installation(harness, location_key(LOCATION))
    assert healed is not None and not healed.needs_reauth

    await harness.post(webhook("m-healed"))
    await harness.wait_for(lambda: harness.statuses_for("m-healed"), what="status")
    harness.stop()
    assert shutdown_counters(harness.logs())["installations_needing_reauth"] == 1


async def test_fifty_concurrent_uses_of_an_expired_token_make_exactly_one_refresh(
    harness: Harness,
):
    old = await seed(harness, expires_in=-60)
    harness.ghl.revoke(old["access_token"])
    harness.ghl.token_delay = 0.3  # a slow GHL widens any race
    harness.start()
    ids = [f"m-burst-{i}" for i in range(50)]

    responses = await asyncio.gather(*(harness.post(webhook(i)) for i in ids))

    assert {r.status_code for r in responses} == {202}
    await harness.wait_for(
        lambda: all(harness.statuses_for(i) for i in ids), timeout=30, what="50 statuses"
    )
    assert len(harness.ghl.refresh_calls()) == 1
    assert len({s["token"] for s in harness.ghl.statuses}) == 1


@pytest.mark.alone  # two busy bridges (and the wire server) want 1.5 cores for 40 messages in 30 s
@pytest.mark.process  # two processes on one database
async def test_two_bridge_processes_on_one_database_make_exactly_one_refresh(
    harness: Harness, tmp_path: Path
):
    old = await seed(harness, expires_in=-60)
    harness.ghl.revoke(old["access_token"])
    harness.ghl.token_delay = 0.3
    harness.env["WORKER_CONCURRENCY"] = "8"  # neither process can take all the work alone
    harness.start()
    other = Harness(
        cast=harness.cast,
        ghl=harness.ghl,
        env=harness.env,
        log_path=tmp_path / "bridge-2.log",
        as_process=True,
    )
    other.start()
    try:
        ids = [f"m-two-{i}" for i in range(40)]

        await asyncio.gather(
            *(
                (harness if n % 2 else other).post(webhook(message_id))
                for n, message_id in enumerate(ids)
            )
        )

        await harness.wait_for(
            lambda: all(harness.statuses_for(i) for i in ids), timeout=30, what="40 statuses"
        )
    finally:
        other.stop()
    harness.stop()
    assert len(harness.ghl.refresh_calls()) == 1
    assert len({s["token"] for s in harness.ghl.statuses}) == 1
    counters = [shutdown_counters(h.logs()) for h in (harness, other)]
    assert all(c.get("status_reported_delivered", 0) > 0 for c in counters)  # both worked
    assert sum(c.get("token_refreshes", 0) for c in counters) == 1


# At rest --------------------------------------------------------------------------------------
async def test_tokens_are_unreadable_in_the_raw_database_documents(
    harness: Harness, store_env: dict[str, str]
):
    harness.start()
    harness.ghl.add_code("code-raw", "loc-raw")
    await get(harness, "/oauth/callback", code="code-raw")
    stored = await installation(harness, location_key("loc-raw"))
    assert stored is not None and stored.refresh_token is not None

    raw = raw_bytes(store_env, location_key("loc-raw"))

    assert b"loc-raw" in raw  # the document is there, in the clear where it may be
    assert stored.access_token.encode() not in raw
    assert stored.refresh_token.encode() not in raw
