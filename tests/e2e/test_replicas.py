"""Several bridge replicas on one database: one Cast rate per key for the cluster, failover."""

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.support.harness import Harness, webhook

RATE = 10


@pytest.fixture
async def replicas(harness: Harness, tmp_path: Path):
    harness.cast.per_key_rate = RATE
    harness.env.update(
        {"CAST_RATE_PER_KEY": str(RATE), "LEASE_SECONDS": "3", "DELIVERY_STATUS_MODE": "accepted"}
    )
    await harness.seed_installation()
    second = Harness(
        cast=harness.cast,
        ghl=harness.ghl,
        env=dict(harness.env),
        log_path=tmp_path / "bridge-2.log",
    )
    harness.start()
    second.start()
    yield harness, second
    if second.proc is not None:
        second.stop()


async def post_alternately(first: Harness, second: Harness, count: int, prefix: str) -> None:
    for i in range(count):
        target = first if i % 2 == 0 else second
        response = await target.post(webhook(f"{prefix}-{i}"))
        assert response.status_code == 202


async def test_two_replicas_together_keep_one_keys_rate_with_no_429(replicas):
    first, second = replicas
    await post_alternately(first, second, 40, "m-pace")

    await first.wait_for(lambda: len(first.cast.sent) == 40, timeout=30, what="40 sends")
    assert first.cast.rate_limited == 0
    times = sorted(sms["at"] for sms in first.cast.sent)
    assert (len(times) - 1) / (times[-1] - times[0]) <= RATE * 1.02  # one rate, not two
    assert first.cast.max_sends_in_any_second() <= RATE + 2  # network jitter, no bursts
    assert len({sms["idempotency_key"] for sms in first.cast.sent}) == 40


async def test_killing_the_replica_that_is_sending_hands_its_work_to_the_other(replicas):
    first, second = replicas
    await post_alternately(first, second, 40, "m-failover")
    await first.wait_for(lambda: len(first.cast.sent) >= 10, what="sending under way")
    first.stop(signal.SIGKILL)

    await second.wait_for(lambda: len(second.cast.sent) == 40, timeout=40, what="all 40 sent")
    await asyncio.sleep(0.5)
    counts = Counter(sms["idempotency_key"] for sms in second.cast.sent)
    assert len(counts) == 40 and max(counts.values()) == 1
    await second.wait_for(lambda: len(second.ghl.statuses) >= 40, timeout=30, what="statuses")
