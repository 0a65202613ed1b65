"""Pacing per Cast key is shared by every pacer on one store (several bridge processes)."""

import asyncio
import time

from app.cast.pacing import CastPacer
from app.store import Store


async def sends_per_second(pacers: list[CastPacer], count: int, key: str) -> list[float]:
    times: list[float] = []

    async def send(pacer: CastPacer) -> None:
        await pacer.before_send(key)
        times.append(time.monotonic())

    await asyncio.gather(*(send(pacers[i % len(pacers)]) for i in range(count)))
    return sorted(times)


async def test_one_key_is_paced_at_its_rate(store: Store):
    pacer = CastPacer(store, per_key_rate=20, ip_rate=1000)
    times = await sends_per_second([pacer], 11, "cast_a")
    assert times[-1] - times[0] >= 0.5 * 0.95


async def test_two_pacers_on_one_store_share_the_keys_rate(store: Store):
    pacers = [CastPacer(store, per_key_rate=20, ip_rate=1000) for _ in range(2)]
    times = await sends_per_second(pacers, 11, "cast_a")
    assert times[-1] - times[0] >= 0.5 * 0.95


async def test_different_keys_do_not_wait_for_each_other(store: Store):
    pacer = CastPacer(store, per_key_rate=2, ip_rate=1000)
    started = time.monotonic()
    await asyncio.gather(*(pacer.before_send(f"cast_{i}") for i in range(10)))
    assert time.monotonic() - started < 1.5  # one key alone would need 4.5 s
