"""GHL's webhooks as GHL documents them (issue 27): every documented example, signed, gets a 2xx
and its effect; INSTALL for agencies (bulk, future locations), ContactDndUpdate onto the opt-out
list, attachments in every shape, and no send for a location without an installation.

The bridge runs in-process (ASGITransport, its workers in its lifespan) on both stores, its real
GHL and Cast clients talking HTTP to the dev kit's fakes. The examples are copied unchanged from
GHL's docs into tests/data/ghl_documented_webhooks.json."""

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.config import load_settings
from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import CAST_KEY, CIPHER, CLIENT_SECRET, bridge_env, webhook, with_store
from app.devkit.server_thread import ServerThread
from app.devkit.signing import test_keys
from app.ghl.schemas import TokenResponse
from app.main import create_app
from app.oauth.repository import InstallationRepository, company_key, location_key
from app.oauth.schemas import Installation
from app.optouts.repository import DND_QUEUE, OptOutList
from app.optouts.schemas import OptOut, dnd_note
from app.outbound.repository import RefusedMessages
from app.store import Store

# GHL's official docs, beside the checkout (../shared/reference/ghl-official) where present.
GHL_DOCS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ghl-official" / "docs"
EXAMPLES = json.loads((Path(__file__).parent / "data" / "ghl_documented_webhooks.json").read_text())
DOCS_APP_ID = "ve9EPM428h8vShlRW1KT"  # the appId of GHL's examples: this bridge's app here
CLIENT_ID = f"{DOCS_APP_ID}-cast"
ADMIN_KEY = "admin-key-documented-webhooks"
APP_URL, DELIVERY_URL = "/webhooks/ghl/app", "/webhooks/ghl/outbound"
PATHS = {"app": APP_URL, "delivery": DELIVERY_URL}
AGENCY = "otg8dTQqGLh3Q6iQI55w"  # the companyId (and locationId) of the INSTALL examples
DND_LOCATION = "ve9EPM428h8vShlRW1KT"  # the locationId of the ContactDndUpdate example
SMS_LOCATION = "GKAWb4yu7A4LSc0skQ6g"  # the locationId of the ProviderOutboundMessage example
LOCATION, PHONE = "loc-1", "+639171234567"


@dataclass
class Bridge:
    client: httpx.AsyncClient
    ghl: FakeGHL
    cast: FakeCast
    env: dict[str, str]

    async def post(self, body: dict[str, Any], path: str = APP_URL) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **test_keys().ed25519_headers(raw)}
        return await self.client.post(path, content=raw, headers=headers)

    async def with_store[T](self, action: Callable[[Store], Awaitable[T]]) -> T:
        return await with_store(self.env, action)

    async def install(self, location_id: str | None, company_id: str | None = None) -> None:
        """Store the installation the OAuth callback would: a location's, or an agency's
        (without `location_id`) covering `location_ids` later."""
        user_type = "Location" if location_id else "Company"
        pair = TokenResponse.model_validate(self.ghl.issue_pair(location_id, company_id, user_type))
        installation = Installation.from_token(
            pair, time.time(), location_id=location_id, company_id=company_id, user_type=user_type
        )
        await self.with_store(lambda store: installations(store).put(installation))

    async def installation(self, key: str) -> Installation | None:
        found = await self.with_store(lambda store: installations(store).get(key))
        return found[0] if found else None

    async def optout(self, location_id: str, phone: str = PHONE) -> OptOut | None:
        return await self.with_store(lambda store: OptOutList(store).get(location_id, phone))

    def statuses(self, message_id: str) -> list[dict[str, Any]]:
        return [s for s in self.ghl.statuses if s["message_id"] == message_id]

    async def status_of(self, message_id: str) -> dict[str, Any]:
        await wait_for(lambda: self.statuses(message_id), f"GHL to get {message_id}'s status")
        (entry,) = self.statuses(message_id)
        return entry


def installations(store: Store) -> InstallationRepository:
    return InstallationRepository(store, CIPHER)


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeGHL, FakeCast, str, str]]:
    ghl, cast = FakeGHL(CLIENT_ID, CLIENT_SECRET), FakeCast({CAST_KEY}, per_key_rate=50)
    ghl_server, cast_server = ServerThread(ghl.app).start(), ServerThread(cast.app).start()
    yield ghl, cast, ghl_server.url, cast_server.url
    ghl_server.stop()
    cast_server.stop()


@pytest.fixture
async def bridge(fakes, store_env: dict[str, str]) -> AsyncIterator[Bridge]:
    ghl, cast, ghl_url, cast_url = fakes
    env = bridge_env(store_env, cast_url, ghl_url, GHL_CLIENT_ID=CLIENT_ID, ADMIN_API_KEY=ADMIN_KEY)
    settings = load_settings(**{key.lower(): value for key, value in env.items()})
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield Bridge(client, ghl, cast, env)


def dnd_update(location_id: str, status: str, *, message: str = "", phone: str = PHONE) -> dict:
    """A ContactDndUpdate like GHL's example, for a Philippine number."""
    return {
        "type": "ContactDndUpdate",
        "locationId": location_id,
        "id": "contact-1",
        "phone": phone,
        "dnd": status == "active",
        "dndSettings": {"SMS": {"status": status, "message": message, "code": "101"}},
    }


# Every documented example ---------------------------------------------------------------------
async def nothing(b: Bridge) -> None:
    return None


async def agency_installed(b: Bridge) -> None:
    await b.install(None, AGENCY)
    b.ghl.installed[AGENCY] = ["loc-a"]


async def example_location_installed(b: Bridge) -> None:
    await b.install(AGENCY, AGENCY)


async def dnd_location_installed(b: Bridge) -> None:
    await b.install(DND_LOCATION)


async def sms_location_installed(b: Bridge) -> None:
    await b.install(SMS_LOCATION)


async def location_token_from_the_agency(b: Bridge) -> None:
    stored = await b.installation(location_key(AGENCY))
    assert stored is not None and stored.source == "company"


async def agency_locations_obtained(b: Bridge) -> None:
    assert await b.installation(location_key("loc-a")) is not None


async def location_forgotten(b: Bridge) -> None:
    assert await b.installation(location_key(AGENCY)) is None


async def agency_forgotten(b: Bridge) -> None:
    assert await b.installation(company_key(AGENCY)) is None


async def no_number_listed(b: Bridge) -> None:
    assert await b.optout(DND_LOCATION, "+919509597501") is None


async def ghl_not_called(b: Bridge) -> None:
    assert (b.ghl.token_requests, b.ghl.status_requests, b.ghl.inbound_requests) == ([], [], [])


async def reported_failed_unsendable(b: Bridge) -> None:
    status = await b.status_of("GKJxs4P5L8dWc5CFUITM")
    assert status["body"]["status"] == "failed"
    assert status["body"]["error"]["code"] == "INVALID_PHONE"  # a US number: Cast sends to PH
    assert b.cast.requests == []


@dataclass(frozen=True)
class Effect:
    seed: Callable[[Bridge], Awaitable[None]]
    status: str
    check: Callable[[Bridge], Awaitable[None]]


IGNORED = Effect(nothing, "ignored", ghl_not_called)
EFFECTS = {
    "For Location Level App Install if company is whitelabeled": Effect(
        agency_installed, "installed", location_token_from_the_agency
    ),
    "For Location Level App Install if company is non whitelabeled": Effect(
        agency_installed, "installed", location_token_from_the_agency
    ),
    "For Agency Level App Install": Effect(
        agency_installed, "installed", agency_locations_obtained
    ),
    "For Location Level App Uninstall": Effect(
        example_location_installed, "uninstalled", location_forgotten
    ),
    "For Agency Level App Uninstall": Effect(agency_installed, "uninstalled", agency_forgotten),
    # SMS DND inactive, an Indian number: not a number the bridge texts
    "docs/ContactDndUpdate.md: Example": Effect(
        dnd_location_installed, "ignored", no_number_listed
    ),
    "Example for SMS": Effect(sms_location_installed, "queued", reported_failed_unsendable),
}


def effect_of(example: dict[str, Any]) -> Effect:
    titled = f"{example['doc']}: {example['example']}"
    return EFFECTS.get(example["example"]) or EFFECTS.get(titled) or IGNORED


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e['doc']}: {e['example']}")
async def test_every_documented_webhook_example_signed_gets_a_2xx_and_its_effect(
    bridge: Bridge, example: dict[str, Any]
):
    effect = effect_of(example)
    await effect.seed(bridge)

    response = await bridge.post(example["body"], PATHS[example["endpoint"]])

    assert 200 <= response.status_code < 300, response.text
    assert response.json()["status"] == effect.status
    await effect.check(bridge)


@pytest.mark.skipif(not GHL_DOCS.is_dir(), reason="GHL's docs are not beside the checkout")
def test_the_examples_are_the_json_examples_of_ghls_webhook_docs_unchanged():
    documented = [
        (f"docs/{path.name}", json.loads(block))
        for path in sorted(GHL_DOCS.glob("*.md"))
        if "tags: [Webhook Events]" in (text := path.read_text())
        for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    ]

    assert documented == [(example["doc"], example["body"]) for example in EXAMPLES]


def test_the_examples_are_every_json_example_of_the_webhook_docs():
    counts: dict[str, int] = {}
    for example in EXAMPLES:
        counts[example["doc"]] = counts.get(example["doc"], 0) + 1
    assert counts == {
        "docs/AppInstall.md": 3,
        "docs/AppUninstall.md": 2,
        "docs/ContactDndUpdate.md": 1,
        "docs/InboundMessage.md": 4,
        "docs/OutboundMessage.md": 4,
        "docs/ProviderOutboundMessage.md": 2,
    }


# App webhooks ----------------------------------------------------------------------------------
async def test_an_unsigned_example_is_refused_without_a_webhook_id_too(bridge: Bridge):
    await bridge.install(AGENCY, AGENCY)
    uninstall = {"type": "UNINSTALL", "appId": DOCS_APP_ID, "locationId": AGENCY}

    response = await bridge.client.post(APP_URL, json=uninstall)

    assert response.status_code == 401
    assert await bridge.installation(location_key(AGENCY)) is not None


async def test_a_bulk_install_obtains_a_token_for_each_of_its_location_ids(bridge: Bridge):
    await bridge.install(None, AGENCY)
    install = {"type": "INSTALL", "companyId": AGENCY, "locationIds": ["loc-x", "loc-y"]}

    response = await bridge.post(install)

    assert response.json()["status"] == "installed"
    assert sorted(r["locationId"] for r in bridge.ghl.location_token_requests) == ["loc-x", "loc-y"]
    company = await bridge.installation(company_key(AGENCY))
    assert company is not None and company.location_ids == ["loc-x", "loc-y"]


async def test_an_install_of_a_future_location_without_company_id_finds_its_agency(
    bridge: Bridge,
):
    await bridge.install(None, AGENCY)
    bridge.ghl.installed[AGENCY] = ["loc-new"]

    response = await bridge.post({"type": "INSTALL", "appId": DOCS_APP_ID, "locationId": "loc-new"})

    assert response.json()["status"] == "installed"
    stored = await bridge.installation(location_key("loc-new"))
    assert stored is not None and (stored.company_id, stored.source) == (AGENCY, "company")


async def test_an_install_without_company_id_no_agency_lists_stays_pending(bridge: Bridge):
    await bridge.install(None, AGENCY)
    bridge.ghl.installed[AGENCY] = ["loc-other"]

    response = await bridge.post({"type": "INSTALL", "appId": DOCS_APP_ID, "locationId": "loc-z"})

    assert response.json()["status"] == "pending"
    assert bridge.ghl.location_token_requests == []


async def test_an_event_type_the_bridge_does_not_use_is_answered_ignored(bridge: Bridge):
    response = await bridge.post({"type": "ContactCreate", "locationId": LOCATION, "id": "c-1"})

    assert (response.status_code, response.json()["status"]) == (200, "ignored")


# Attachments -----------------------------------------------------------------------------------
async def test_a_message_with_attachments_only_is_sent_as_its_links(bridge: Bridge):
    await bridge.install(LOCATION)
    body = webhook("m-att", attachments=["https://x.test/a.png", "https://x.test/b.pdf"])
    del body["message"]

    response = await bridge.post(body, DELIVERY_URL)

    assert response.status_code == 202
    assert (await bridge.status_of("m-att"))["body"] == {"status": "delivered"}
    (sent,) = bridge.cast.sent
    assert sent["message"] == "https://x.test/a.png\nhttps://x.test/b.pdf"


async def test_attachments_given_as_objects_are_sent_as_their_urls(bridge: Bridge):
    await bridge.install(LOCATION)
    attachments = [{"url": "https://x.test/a.png", "type": "image/png"}]

    await bridge.post(webhook("m-obj", message="See", attachments=attachments), DELIVERY_URL)

    assert (await bridge.status_of("m-obj"))["body"] == {"status": "delivered"}
    assert [sent["message"] for sent in bridge.cast.sent] == ["See\nhttps://x.test/a.png"]


async def test_attachments_null_are_none(bridge: Bridge):
    await bridge.install(LOCATION)

    response = await bridge.post(webhook("m-null", attachments=None), DELIVERY_URL)

    assert response.status_code == 202
    assert (await bridge.status_of("m-null"))["body"] == {"status": "delivered"}


async def test_a_message_with_nothing_to_send_is_reported_failed_with_its_reason(bridge: Bridge):
    await bridge.install(LOCATION)
    body = {**webhook("m-empty", attachments=None), "message": None}

    response = await bridge.post(body, DELIVERY_URL)

    assert response.status_code == 202
    status = (await bridge.status_of("m-empty"))["body"]
    assert (status["status"], status["error"]["code"]) == ("failed", "EMPTY_MESSAGE")
    assert bridge.cast.requests == []


# No installation, no send ------------------------------------------------------------------------
async def test_a_message_for_an_uninstalled_agency_location_is_reported_not_installed(
    bridge: Bridge,
):
    await bridge.install(None, AGENCY)
    await bridge.post({"type": "INSTALL", "companyId": AGENCY, "locationId": LOCATION})
    await bridge.post({"type": "UNINSTALL", "companyId": AGENCY, "locationId": LOCATION})

    response = await bridge.post(webhook("m-gone"), DELIVERY_URL)

    assert response.status_code == 202
    status = await bridge.status_of("m-gone")
    assert (status["body"]["status"], status["body"]["error"]["code"]) == (
        "failed",
        "NOT_INSTALLED",
    )
    assert bridge.cast.requests == []  # on no Cast key
    assert bridge.ghl.token_locations[status["token"]] == LOCATION  # a location token
    assert await bridge.installation(location_key(LOCATION)) is None  # still not installed


async def test_a_message_no_token_can_report_is_refused_and_listed_for_the_operator(
    bridge: Bridge,
):
    response = await bridge.post(webhook("m-stranger"), DELIVERY_URL)

    assert response.status_code == 202

    async def refused() -> list[Any]:
        return await bridge.with_store(lambda store: RefusedMessages(store).listing())

    deadline = time.monotonic() + 10
    while not await refused() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    listed = await bridge.client.get(
        "/api/admin/refused-messages", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    (row,) = listed.json()["messages"]
    assert (row["message_id"], row["location_id"]) == ("m-stranger", LOCATION)
    assert bridge.cast.requests == [] and bridge.ghl.status_requests == []
    metrics = (await bridge.client.get("/metrics")).text
    assert 'bridge_status_reports_total{outcome="refused_not_installed"} 1.0' in metrics


# DND from GHL ------------------------------------------------------------------------------------
async def test_sms_dnd_set_in_ghl_lists_the_number_and_its_sends_fail_with_the_reason(
    bridge: Bridge,
):
    await bridge.install(LOCATION)

    response = await bridge.post(dnd_update(LOCATION, "active"))

    assert response.json()["status"] == "opted_out"
    listed = await bridge.optout(LOCATION)
    assert listed is not None and listed.source == "ghl"
    await bridge.post(webhook("m-dnd"), DELIVERY_URL)
    status = (await bridge.status_of("m-dnd"))["body"]
    assert status["error"]["code"] == "OPTED_OUT"
    assert "SMS DND set in GHL" in status["error"]["message"]
    assert bridge.cast.requests == []


async def test_sms_dnd_cleared_in_ghl_lifts_the_dnd_it_set(bridge: Bridge):
    await bridge.install(LOCATION)
    await bridge.post(dnd_update(LOCATION, "active"))

    response = await bridge.post(dnd_update(LOCATION, "inactive"))

    assert response.json()["status"] == "opted_in"
    assert await bridge.optout(LOCATION) is None


async def test_sms_dnd_set_again_after_clearing_is_not_taken_for_a_repeat(bridge: Bridge):
    await bridge.install(LOCATION)
    await bridge.post(dnd_update(LOCATION, "active"))
    await bridge.post(dnd_update(LOCATION, "inactive"))

    response = await bridge.post(dnd_update(LOCATION, "active"))  # the first body again

    assert response.json()["status"] == "opted_out"
    assert await bridge.optout(LOCATION) is not None


async def test_sms_dnd_cleared_in_ghl_keeps_the_recipients_own_stop(bridge: Bridge):
    await bridge.install(LOCATION)
    now = time.time()
    stop = OptOut(
        location_id=LOCATION, phone=PHONE, source="keyword", at=now, recorded_at=now, keyword="STOP"
    )
    await bridge.with_store(lambda store: OptOutList(store).add(stop))

    response = await bridge.post(dnd_update(LOCATION, "inactive"))

    assert response.json()["status"] == "kept"
    listed = await bridge.optout(LOCATION)
    assert listed is not None and listed.source == "keyword"


async def test_the_echo_of_a_dnd_the_bridge_set_adds_nothing(bridge: Bridge):
    await bridge.install(LOCATION)
    ours = dnd_note("keyword", time.time(), keyword="STOP")

    response = await bridge.post(dnd_update(LOCATION, "active", message=ours))

    assert response.json()["status"] == "unchanged"
    assert await bridge.optout(LOCATION) is None


async def test_a_dnd_update_for_a_location_without_an_installation_is_ignored(bridge: Bridge):
    response = await bridge.post(dnd_update("loc-stranger", "active"))

    assert response.json()["status"] == "ignored"
    assert await bridge.optout("loc-stranger") is None


async def test_an_operators_lift_clears_the_sms_dnd_the_bridge_set(bridge: Bridge):
    await bridge.install(LOCATION)
    now = time.time()
    note = dnd_note("keyword", now, keyword="STOP")
    bridge.ghl.add_contact(
        LOCATION, PHONE, dndSettings={"SMS": {"status": "active", "message": note}}
    )
    stop = OptOut(location_id=LOCATION, phone=PHONE, source="keyword", at=now, recorded_at=now)
    await bridge.with_store(lambda store: OptOutList(store).add(stop))

    lifted = await bridge.client.post(
        f"/api/admin/locations/{LOCATION}/optouts/{PHONE}/lift",
        json={"reason": "customer called to opt back in"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert lifted.status_code == 200
    await wait_for(lambda: bridge.ghl.sms_dnd(LOCATION, PHONE) == "inactive", "DND cleared")


async def test_an_operators_lift_of_a_stop_leaves_a_dnd_the_ghl_user_set(bridge: Bridge):
    await bridge.install(LOCATION)
    theirs = {"SMS": {"status": "active", "message": "set by the GHL user"}}
    bridge.ghl.add_contact(LOCATION, PHONE, dndSettings=theirs)
    now = time.time()
    stop = OptOut(location_id=LOCATION, phone=PHONE, source="keyword", at=now, recorded_at=now)
    await bridge.with_store(lambda store: OptOutList(store).add(stop))

    await bridge.client.post(
        f"/api/admin/locations/{LOCATION}/optouts/{PHONE}/lift",
        json={"reason": "customer called to opt back in"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    async def outcomes() -> list[str]:
        return [item.data["outcome"] for item in await bridge.with_store(dnd_tasks)]

    deadline = time.monotonic() + 10
    while await outcomes() != ["unchanged"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await outcomes() == ["unchanged"]
    assert bridge.ghl.contact_updates == [] and bridge.ghl.sms_dnd(LOCATION, PHONE) == "active"


async def test_an_operators_lift_leaves_a_dnd_someone_set_in_ghl(bridge: Bridge):
    await bridge.install(LOCATION)
    theirs = {"SMS": {"status": "active", "message": "set by the GHL user"}}
    bridge.ghl.add_contact(LOCATION, PHONE, dndSettings=theirs)
    await bridge.post(dnd_update(LOCATION, "active", message="set by the GHL user"))

    lifted = await bridge.client.post(
        f"/api/admin/locations/{LOCATION}/optouts/{PHONE}/lift",
        json={"reason": "checked with the customer"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )

    assert lifted.status_code == 200 and lifted.json()["source"] == "ghl"
    assert await bridge.with_store(dnd_tasks) == []  # nothing queued to change GHL
    assert bridge.ghl.sms_dnd(LOCATION, PHONE) == "active"


async def dnd_tasks(store: Store) -> list[Any]:
    return await store.list_items(DND_QUEUE, key="location_id", value=LOCATION, since=0, limit=10)
