"""The dev kit's fake Cast where the receipts and the per-IP budget depend on it: `/sms/logs` as
strictly as cast-api.md §5.15 allows, and one per-IP limit over every endpoint."""

from collections.abc import AsyncIterator

import httpx
import pytest

from app.devkit.fake_cast import FakeCast
from app.devkit.harness import CAST_KEY

OTHER_KEY = "cast_" + "cd" * 32


@pytest.fixture
def cast() -> FakeCast:
    return FakeCast({CAST_KEY, OTHER_KEY}, per_key_rate=1e9, ip_rate=1e9, ip_burst=1e9)


@pytest.fixture
async def http(cast: FakeCast) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cast") as client:
        yield client


async def send(
    http: httpx.AsyncClient, text: str, key: str = CAST_KEY, channel: str = "sms"
) -> str:
    response = await http.post(
        f"/api/v1/{channel}/send",
        json={"to": "09171234567", "message": text},
        headers={"X-API-Key": key},
    )
    return response.json()["message_id"]


async def logs(http: httpx.AsyncClient, key: str = CAST_KEY, **query: str) -> httpx.Response:
    return await http.get("/api/v1/sms/logs", params=query, headers={"X-API-Key": key})


async def test_logs_list_the_keys_sms_sends_newest_first(http, cast):
    first, second = await send(http, "one"), await send(http, "two")
    await send(http, "other account", key=OTHER_KEY)
    cast.allowed_channels[CAST_KEY] = {"sms", "sim"}
    await send(http, "via the SIM gateway", channel="sim")

    entries = (await logs(http)).json()["logs"]

    assert [entry["id"] for entry in entries] == [second, first]
    assert entries[0]["destination"] == "+639171234567"


async def test_a_logs_entry_carries_the_receipt_only_in_dlr_status(http, cast):
    cast.next_dlr.append([{"status": "undelivered", "dlr_status": "REJECTD"}])
    await send(http, "rejected")

    (entry,) = (await logs(http)).json()["logs"]

    assert (entry["status"], entry["dlr_status"]) == ("sent", "REJECTD")


async def test_a_message_shows_no_receipt_before_its_settle_time(http, cast):
    cast.settle_after = (60.0, 60.0)
    await send(http, "slow carrier")

    (entry,) = (await logs(http)).json()["logs"]

    assert entry["status"] == "sent" and "dlr_status" not in entry


async def test_logs_page_by_limit_and_offset(http):
    ids = [await send(http, f"n{i}") for i in range(5)]

    page = (await logs(http, limit="2", offset="2")).json()["logs"]

    assert [entry["id"] for entry in page] == [ids[2], ids[1]]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "501"},
        {"limit": "0"},
        {"offset": "-1"},
        {"status": "delivered"},
        {"from": "1 Dec"},
    ],
)
async def test_a_logs_query_out_of_bounds_is_refused(http, query):
    response = await logs(http, **query)

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_the_per_ip_sliding_limit_counts_every_endpoint():
    cast = FakeCast({CAST_KEY}, per_key_rate=1e9, ip_rate=3, ip_limiter="sliding")
    transport = httpx.ASGITransport(app=cast.app)
    headers = {"X-API-Key": CAST_KEY}
    sms = {"to": "09171234567", "message": "x"}
    async with httpx.AsyncClient(transport=transport, base_url="http://cast") as client:
        answers = [
            (await client.get("/api/v1/account/balance", headers=headers)).status_code,
            (await logs(client)).status_code,
            (await client.post("/api/v1/sms/send", json=sms, headers=headers)).status_code,
            (await client.get("/api/v1/sms/status/CAST1", headers=headers)).status_code,
        ]

    assert answers == [200, 200, 200, 429]  # four requests well within one second
    assert cast.api_calls == {"balance": 1, "logs": 1, "send": 1, "status": 1}


def test_the_sliding_per_ip_limit_allows_the_rate_in_any_second_then_refuses():
    cast = FakeCast({CAST_KEY}, ip_rate=30, ip_limiter="sliding")

    refused = [cast.ip_refused("10.0.0.1", now=100 + i * 0.03) for i in range(31)]

    assert refused == [False] * 30 + [True]
    assert not cast.ip_refused("10.0.0.2", now=100.9)  # another address: its own budget
    assert not cast.ip_refused("10.0.0.1", now=101.0)  # the first one left the window
