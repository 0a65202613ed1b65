"""The message log on the running bridge: `GET /api/admin/messages` lists outbound and inbound
messages, filtered, newest first, paged by cursor, and exports the same selection as CSV."""

import csv
import io
from typing import Any

import httpx
import pytest

from app.devkit.harness import LOCATION, Harness
from app.inbound.repository import QUEUE as INBOUND
from app.inbound.schemas import InboundPayload, InboundSMS
from app.outbound.repository import QUEUE as OUTBOUND
from app.outbound.service import new_message
from app.store import DONE, Store
from tests.e2e.test_admin import ADMIN_KEY, INBOUND_KEY

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
OTHER = "loc-other"


async def finished(store: Store, queue: str, item_id: str, data: dict[str, Any], at: float):
    """Store a message as the workers leave it when done (no worker picks it up again)."""
    assert await store.enqueue(queue, item_id, data, due_at=at)
    [held] = await store.claim(queue, now=at, lease_seconds=3600, limit=1)
    assert held.id == item_id and held.lease
    assert await store.save(queue, item_id, held.lease, data=data, state=DONE, due_at=at)


async def sent(
    store: Store,
    message_id: str,
    at: float,
    *,
    text: str = "Hello",
    phone: str = "+639171234567",
    location_id: str = LOCATION,
    status: str = "delivered",
) -> None:
    message = new_message(message_id, location_id, phone, text, 160, at)
    if message.status is None:
        message.finish(at + 1, status, "CARRIER" if status == "failed" else None)
    await finished(store, OUTBOUND, message_id, message.model_dump(mode="json"), at)


async def received(
    store: Store,
    gateway_id: str,
    at: float,
    *,
    text: str = "Reply",
    phone: str = "09171234567",
    location_id: str | None = LOCATION,
    status: str = "delivered",
) -> None:
    payload = InboundPayload.model_validate({"from": phone, "message": text, "id": gateway_id})
    message = InboundSMS.from_payload(payload, at)
    if location_id is not None:
        message.assign(at, location_id, "recent_outbound")
    message.finish(at, status)  # type: ignore[arg-type]
    await finished(store, INBOUND, message.id, message.model_dump(mode="json"), at)


async def seed_log(store: Store) -> None:
    await sent(store, "m-1", T0, text="Your order is ready")
    await received(store, "r-1", T0 + 10, text="Thanks, ORDER received", phone="+63 917 123 4567")
    await sent(store, "m-2", T0 + 20, text="Promo", phone="09181112222", status="failed")
    await sent(store, "m-3", T0 + 30, text="Other sub-account", location_id=OTHER)
    await received(
        store,
        "r-2",
        T0 + 40,
        text="who is this",
        phone="09281234567",
        location_id=None,
        status="unroutable",
    )


async def get(h: Harness, params: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.get(
            "/api/admin/messages",
            params=params,
            headers={"Authorization": f"Bearer {ADMIN_KEY}", **headers},
        )


async def ids(h: Harness, **params: Any) -> list[str]:
    response = await get(h, params)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["messages"]]


@pytest.fixture
async def log(harness: Harness) -> Harness:
    harness.env.update(ADMIN_API_KEY=ADMIN_KEY, INBOUND_API_KEY=INBOUND_KEY)
    await harness.with_store(seed_log)
    harness.start()
    return harness


async def test_the_log_lists_both_directions_newest_first_with_the_number_masked(log: Harness):
    response = await get(log)

    assert response.status_code == 200
    rows = response.json()["messages"]
    assert [row["id"] for row in rows] == ["gw:r-2", "m-3", "m-2", "gw:r-1", "m-1"]
    assert response.json()["next_cursor"] is None
    reply = rows[3]
    assert (reply["direction"], reply["status"], reply["location_id"]) == (
        "inbound",
        "delivered",
        LOCATION,
    )
    assert (reply["phone"], reply["text"]) == ("********4567", "Thanks, ORDER received")
    assert rows[4]["at"] == "2027-01-15T08:00:00Z" and rows[4]["direction"] == "outbound"
    assert "9171234567" not in response.text and "9181112222" not in response.text


async def test_the_log_filters_on_location_and_status(log: Harness):
    assert await ids(log, location_id=LOCATION) == ["m-2", "gw:r-1", "m-1"]
    assert await ids(log, location_id=LOCATION, status="failed") == ["m-2"]
    assert await ids(log, status="unroutable") == ["gw:r-2"]
    assert await ids(log, direction="inbound") == ["gw:r-2", "gw:r-1"]


async def test_the_log_finds_a_number_in_any_spelling_in_both_directions(log: Harness):
    for spelling in ("09171234567", "+639171234567", "+63 917-123-4567", "9171234567"):
        assert await ids(log, phone=spelling) == ["m-3", "gw:r-1", "m-1"], spelling


async def test_free_text_searches_outbound_and_inbound_bodies_ignoring_case(log: Harness):
    assert await ids(log, q="order") == ["gw:r-1", "m-1"]
    assert await ids(log, q="ORDER", direction="outbound") == ["m-1"]


async def test_since_and_until_bound_the_time_received(log: Harness):
    selected = await ids(log, since="2027-01-15T08:00:10Z", until="2027-01-15T16:00:30+08:00")
    assert selected == ["m-2", "gw:r-1"]


async def test_pages_follow_next_cursor_to_the_end_without_gaps_or_repeats(log: Harness):
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await get(log, params)).json()
        seen += [row["id"] for row in page["messages"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert seen == ["gw:r-2", "m-3", "m-2", "gw:r-1", "m-1"]


async def test_csv_exports_the_same_selection_with_accept_or_format(log: Harness):
    by_header = await get(log, {"location_id": LOCATION}, Accept="text/csv")
    by_format = await get(log, {"location_id": LOCATION, "format": "csv"})

    for response in (by_header, by_format):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [row["id"] for row in rows] == ["m-2", "gw:r-1", "m-1"]
        assert rows[1]["phone"] == "********4567" and rows[1]["text"] == "Thanks, ORDER received"


async def test_csv_export_defuses_a_body_a_spreadsheet_would_run(harness: Harness):
    harness.env.update(ADMIN_API_KEY=ADMIN_KEY)
    await harness.with_store(lambda s: sent(s, "m-formula", T0, text="=HYPERLINK(1)"))
    harness.start()

    response = await get(harness, {"format": "csv"})

    (row,) = csv.DictReader(io.StringIO(response.text))
    assert row["text"] == "'=HYPERLINK(1)"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"phone": "12345"}, "phone"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2027-01-02", "until": "2027-01-01"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"locationId": LOCATION}, "locationId"),
        ({"format": "xml"}, "format"),
    ],
)
async def test_an_invalid_filter_is_a_400_naming_it(log: Harness, params: dict[str, str], field):
    response = await get(log, params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_query"
    assert response.json()["error"]["field"] == field
