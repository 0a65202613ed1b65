"""The settings page's response times: the SSO sign-in with cold caches (it reads the Cast account:
balance, profile, usage, sender IDs) and a second view served from the caches, against the fake
Cast on loopback, the bridge as a process of its own. tests/e2e/test_settings_page.py checks what
the page shows and that the second view reads nothing from Cast; this measures how fast.

    .venv/bin/python -m bench.settings_page_bench --runs 10

Each run starts a fresh bridge (its caches cold) on a temporary SQLite store.
"""

import argparse
import asyncio
import html
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from app.devkit.fake_cast import FakeCast
from app.devkit.fake_ghl import FakeGHL
from app.devkit.harness import CAST_KEY, CLIENT_ID, CLIENT_SECRET, Harness, bridge_env
from app.devkit.server_thread import ServerThread
from tests.support.cryptojs import SSO_KEY, sso_payload, user_context

_SESSION = re.compile(r'name="session" value="([^"]*)"')


async def timed_post(client: httpx.AsyncClient, path: str, data: dict[str, str]):
    started = time.perf_counter()
    response = await client.post(path, data=data)
    assert response.status_code == 200, response.text
    return response, time.perf_counter() - started


async def one_run(tmp: Path) -> tuple[float, float]:
    """Seconds for the cold sign-in and for the warm view after it."""
    cast, ghl = FakeCast({CAST_KEY}, per_key_rate=50), FakeGHL(CLIENT_ID, CLIENT_SECRET)
    cast.credits, cast.billing_type = 120, "postpaid"
    cast.approve(CAST_KEY, "CASTTEST", "sms")
    servers = [ServerThread(cast.app).start(), ServerThread(ghl.app).start()]
    store = {"MONGO_URI": "", "DATA_DIR": str(tmp)}
    env = bridge_env(store, servers[0].url, servers[1].url, GHL_APP_SSO_KEY=SSO_KEY)
    bridge = Harness(cast, ghl, env, tmp / "bridge.log", as_process=True)
    await bridge.seed_installation()
    bridge.start()
    try:
        async with httpx.AsyncClient(base_url=bridge.url, timeout=10) as client:
            payload = sso_payload(user_context())
            signed_in, cold = await timed_post(client, "/settings/sso", {"payload": payload})
            found = _SESSION.search(signed_in.text)
            assert found, "no session on the signed-in page"
            session = html.unescape(found.group(1))
            _, warm = await timed_post(client, "/settings/view", {"session": session})
    finally:
        bridge.stop()
        for server in servers:
            server.stop()
    return cold, warm


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"{name}: min {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    colds, warms = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="settings-bench-") as tmp:
            cold, warm = await one_run(Path(tmp))
        colds.append(cold)
        warms.append(warm)
    print(f"{runs} runs, a fresh bridge process each")
    print(summary("sign-in, cold caches", colds))
    print(summary("second view, cached", warms))


if __name__ == "__main__":
    asyncio.run(main())
