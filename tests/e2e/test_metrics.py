"""GET /metrics on the running bridge: the counters move with real traffic, the labels carry no
phone number or token, and METRICS_BEARER_TOKEN protects the endpoint when set."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.cast.keys import key_label
from app.devkit.harness import CAST_KEY, LOCATION, Harness, webhook

INBOUND_KEY = "inbound-metrics-key-7c1d"
METRICS_TOKEN = "metrics-token-4b9e2f"


async def scrape(h: Harness, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=h.url, timeout=10) as client:
        return await client.get("/metrics", headers=headers)


def values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_move_with_traffic_and_never_carry_a_phone_or_token(harness: Harness):
    harness.env.update(INBOUND_API_KEY=INBOUND_KEY)
    token = await harness.seed_installation()
    harness.start()
    before = values((await scrape(harness)).text)

    await harness.post(webhook("m-metrics-ok"))
    await harness.post(webhook("m-metrics-bad-phone", phone="12345"))
    await harness.post(webhook("m-metrics-unsigned"), scheme="none")
    await harness.wait_for(lambda: len(harness.ghl.statuses) == 2, what="both statuses")
    async with httpx.AsyncClient(base_url=harness.url, timeout=10) as client:
        reply = {"from": "09171234567", "message": "YES", "to": "CASTTEST", "id": "gw-metrics"}
        await client.post("/webhooks/cast/inbound", json=reply, headers={"X-API-Key": "wrong"})
        accepted = await client.post(
            "/webhooks/cast/inbound", json=reply, headers={"X-API-Key": INBOUND_KEY}
        )
    assert accepted.status_code == 202
    await harness.wait_for(lambda: harness.ghl.inbound, what="the reply at GHL")

    response = await scrape(harness)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = values(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("bridge_webhooks_total", outcome="queued") == 2
    assert moved("bridge_webhooks_total", outcome="rejected_signature") == 1
    assert moved("bridge_messages_total", status="delivered", reason="confirmed") == 1
    assert moved("bridge_messages_total", status="failed", reason="INVALID_PHONE") == 1
    assert moved("bridge_status_reports_total", outcome="delivered") == 1
    assert moved("bridge_inbound_total", event="received") == 1
    assert moved("bridge_inbound_total", event="delivered") == 1
    assert moved("bridge_inbound_total", event="rejected_auth") == 1
    cast_send = {"upstream": "cast", "operation": "send"}
    assert moved("bridge_upstream_request_duration_seconds_count", **cast_send) == 1
    ghl_status = {"upstream": "ghl", "operation": "message_status"}
    assert moved("bridge_upstream_request_duration_seconds_count", **ghl_status) == 2
    assert value(after, "bridge_queue_items", queue="outbound", state="done") == 2
    assert value(after, "bridge_queue_items", queue="outbound", state="pending") == 0
    assert value(after, "bridge_store_up") == 1
    # HTTP metrics label the route template, not the raw path
    webhook_route = {"handler": "/webhooks/ghl/outbound", "method": "POST"}
    assert moved("bridge_http_requests_total", status="2xx", **webhook_route) == 2
    assert moved("bridge_http_requests_total", status="4xx", **webhook_route) == 1
    for secret in ("9171234567", "+63917", token, CAST_KEY, INBOUND_KEY, "m-metrics-ok"):
        assert secret not in response.text


async def test_cast_errors_are_counted_by_status(bridge: Harness):
    bridge.cast.fail_next(1, 503, "SERVICE_UNAVAILABLE")
    await bridge.post(webhook("m-metrics-retry"))
    await bridge.wait_for(lambda: bridge.statuses_for("m-metrics-retry"), what="status")

    found = values((await scrape(bridge)).text)
    errors = {"upstream": "cast", "operation": "send", "status": "503"}
    assert value(found, "bridge_upstream_errors_total", **errors) == 1
    assert value(found, "bridge_retries_total", step="cast_send") == 1


async def test_a_metrics_bearer_token_protects_the_endpoint(harness: Harness):
    harness.env.update(METRICS_BEARER_TOKEN=METRICS_TOKEN, INBOUND_API_KEY=INBOUND_KEY)
    harness.start()

    missing, wrong = await scrape(harness), await scrape(harness, "not-it")
    inbound_key, right = await scrape(harness, INBOUND_KEY), await scrape(harness, METRICS_TOKEN)

    assert [r.status_code for r in (missing, wrong, inbound_key)] == [401, 401, 401]
    assert missing.json()["error"]["code"] == "invalid_metrics_token"
    assert right.status_code == 200 and "bridge_webhooks_total" in right.text
    assert LOCATION not in right.text


async def test_the_scrape_carries_the_process_and_the_key_of_each_location(harness: Harness):
    harness.start()

    found = values((await scrape(harness)).text)

    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_open_fds") > 0
    default = {"key": key_label(CAST_KEY), "location_id": "default"}
    assert value(found, "bridge_cast_key_location", **default) == 1
    assert value(found, "bridge_location_low_credit_threshold", location_id="default") > 0
