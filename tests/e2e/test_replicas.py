"""Several bridge replicas on one database: one Cast rate per key for the cluster, failover."""

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.devkit.fake_cast import max_in_any_window
from app.devkit.fake_cast_process import RemoteCast
from app.devkit.harness import ENCRYPTION_KEY, Harness, webhook
from app.devkit.signing import test_keys
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.oauth.crypto import TokenCipher

# They measure the cluster's throughput on this machine: with the suite on several workers, the
# other workers' bridges would take the cores these three need (tests/conftest.py).
pytestmark = pytest.mark.alone

OUTBOUND = "/webhooks/ghl/outbound"
RATE = 50  # per key; high so 600 messages take ~12 s
FULL_COUNT = 600
# The pure-Python mongoeco wire server slows as a collection grows (the foundation issue measured
# it): against it the runs use fewer messages. A real MongoDB (TEST_MONGO_URI) gets the full run.
# Its rate is then bounded by the store, so only the upper bound of the rate is checked there.
WIRE_SERVER_COUNT = 60
OTHER_LOCATION, OTHER_KEY = "loc-2", "cast_" + "cd" * 32


@pytest.fixture
def remote_cast(harness: Harness) -> Iterator[RemoteCast]:
    """The fake Cast in its own process: this test process is busy posting 1,000 webhooks and
    would otherwise stall the fake's clock. Each replica is its own client IP in production,
    so the fake's per-IP limit is raised; its per-key limit is the one under test: the strictest
    plausible one, a sliding log (at most RATE sends in any 1 s), with 10 ms of jitter: the
    pacer allows for 20 ms, and a CI box running four bridges and this test on two cores adds
    its own scheduling delays on top (the benchmark runs the 20 ms case). The fake does not
    blame the bridges for its own stalls (`StallWatch`)."""
    keys = [harness.env["CAST_API_KEY"], OTHER_KEY]
    cast = RemoteCast(
        keys, rate=RATE, ip_rate=300, ip_burst=300, key_limiter="sliding", jitter=0.01
    )
    yield cast
    cast.stop()


@pytest.fixture
async def cluster(
    harness: Harness, remote_cast: RemoteCast, tmp_path: Path
) -> AsyncIterator[list[Harness]]:
    """Three bridges sharing one store, one fake Cast (enforcing RATE per key) and one fake GHL."""
    harness.cast = remote_cast  # type: ignore[assignment]
    harness.env.update(
        {
            "CAST_API_URL": remote_cast.url,
            "CAST_RATE_PER_KEY": str(RATE),
            "CAST_IP_RATE": "100",
            "LEASE_SECONDS": "3",
            "DELIVERY_STATUS_MODE": "accepted",
        }
    )
    await harness.seed_installation()
    replicas = [harness] + [
        Harness(
            cast=harness.cast,
            ghl=harness.ghl,
            env=dict(harness.env),
            log_path=tmp_path / f"bridge-{n}.log",
        )
        for n in (2, 3)
    ]
    for replica in replicas:
        replica.start()
    yield replicas
    for replica in replicas[1:]:
        if replica.proc is not None:
            replica.stop()


async def post_spread(replicas: list[Harness], ids: list[str], location: str = "loc-1") -> None:
    """Every webhook to the next replica in turn (a round-robin load balancer).

    One kept-alive client per replica keeps this process (which also hosts the fake Cast)
    light, so the fake's clock sees sends when they arrive.
    """
    clients = [httpx.AsyncClient(base_url=r.url, timeout=10) for r in replicas]
    keys = test_keys()

    async def post(i: int, message_id: str) -> None:
        body = json.dumps(webhook(message_id, locationId=location)).encode()
        headers = {"Content-Type": "application/json", **keys.ed25519_headers(body)}
        response = await clients[i % len(clients)].post(OUTBOUND, content=body, headers=headers)
        assert response.status_code == 202

    try:
        for start in range(0, len(ids), 20):
            chunk = enumerate(ids[start : start + 20], start)
            await asyncio.gather(*(post(i, m) for i, m in chunk))
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def count(backend: str) -> int:
    if backend == "mongodb" and not os.environ.get("TEST_MONGO_URI"):
        return WIRE_SERVER_COUNT
    return FULL_COUNT


def assert_each_sent_once(cast_sent: list[dict], count: int) -> None:
    counts = Counter(sms["idempotency_key"] for sms in cast_sent)
    assert len(counts) == count and max(counts.values()) == 1


def assert_never_faster_than_the_rate(cast_sent: list[dict], key: str) -> None:
    """Never more than RATE sends of one key in any 1-s interval (arrival times at the fake,
    which adds up to 20 ms of jitter)."""
    assert max_in_any_window([sms["at"] for sms in cast_sent if sms["key"] == key]) <= RATE


def achieved_rate(cast_sent: list[dict], key: str) -> float:
    times = sorted(sms["at"] for sms in cast_sent if sms["key"] == key)
    return (len(times) - 1) / (times[-1] - times[0])


async def test_three_replicas_share_one_keys_rate_with_no_429_and_send_each_once(cluster, count):
    first = cluster[0]
    await post_spread(cluster, [f"m-pace-{i}" for i in range(count)])

    await first.wait_for(lambda: len(first.cast.sent) >= count, timeout=90, what="all sends")
    await asyncio.sleep(0.5)
    sent = first.cast.sent
    assert first.cast.rate_limited == 0
    assert_each_sent_once(sent, count)
    assert_never_faster_than_the_rate(sent, first.env["CAST_API_KEY"])
    rate = achieved_rate(sent, first.env["CAST_API_KEY"])
    if count == FULL_COUNT:  # ~96 % at best (app/cast/pacing.py); a send that wakes up late
        assert rate >= RATE * 0.9, rate  # drops its slot, costing one interval


async def test_killing_a_sending_replica_mid_run_loses_and_repeats_nothing(cluster, count):
    first, *others = cluster
    await post_spread(cluster, [f"m-kill-{i}" for i in range(count)])
    await first.wait_for(lambda: len(first.cast.sent) >= count // 4, timeout=60, what="a quarter")
    first.stop(signal.SIGKILL)

    survivor = others[0]
    await survivor.wait_for(lambda: len(survivor.cast.sent) >= count, timeout=120, what="all")
    await asyncio.sleep(0.5)
    assert survivor.cast.rate_limited == 0
    assert_each_sent_once(survivor.cast.sent, count)
    await survivor.wait_for(
        lambda: len(survivor.ghl.statuses) >= count, timeout=60, what="statuses"
    )


async def test_two_locations_with_their_own_keys_are_paced_separately_at_once(cluster, count):
    first = cluster[0]
    await first.seed_installation(OTHER_LOCATION)
    settings = LocationSettings(
        location_id=OTHER_LOCATION,
        cast_api_key=OTHER_KEY,
        sender_id="OTHER",
        updated_at=time.time(),
    )
    cipher = TokenCipher(ENCRYPTION_KEY.encode())
    await first.with_store(lambda store: LocationSettingsRepository(store, cipher).put(settings))
    per_key = count // 3

    await asyncio.gather(
        post_spread(cluster, [f"m-a-{i}" for i in range(per_key)]),
        post_spread(cluster, [f"m-b-{i}" for i in range(per_key)], location=OTHER_LOCATION),
    )
    await first.wait_for(lambda: len(first.cast.sent) >= 2 * per_key, timeout=60, what="sends")
    assert first.cast.rate_limited == 0
    sent = first.cast.sent
    for key in (first.env["CAST_API_KEY"], OTHER_KEY):
        assert_never_faster_than_the_rate(sent, key)
        if count == FULL_COUNT:  # both at once at their full rate; 4 s of sends, so one stall
            assert achieved_rate(sent, key) >= RATE * 0.8  # weighs: 86-99 % in 17 runs
    assert {sms["sender_id"] for sms in sent if sms["key"] == OTHER_KEY} == {"OTHER"}
