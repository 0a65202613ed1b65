"""GHL's refusals of a token refresh, end to end (issue 27): a wrong client secret is the app's
fault, not the installations'; check-config says so."""

import io
import re
from pathlib import Path

import httpx
import pytest

from app import cli
from app.devkit.harness import LOCATION, Harness, webhook
from app.oauth.repository import location_key
from tests.e2e.test_oauth import installation


async def test_a_wrong_client_secret_flags_no_installation_and_check_config_says_so(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    harness.env["GHL_CLIENT_SECRET"] = "not-the-apps-secret"
    await harness.seed_pair(LOCATION, expires_in=0)
    await harness.seed_pair("loc-2", expires_in=0)
    harness.start()
    for n, location in enumerate([LOCATION, "loc-2"]):
        await harness.post(webhook(f"m-{n}", locationId=location))
    await harness.wait_for(
        lambda: len(harness.ghl.refresh_calls()) >= 2, what="both locations' refreshes"
    )

    for location in (LOCATION, "loc-2"):
        stored = await installation(harness, location_key(location))
        assert stored is not None and not stored.needs_reauth
    async with httpx.AsyncClient(base_url=harness.url, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    rejected = re.search(r"^bridge_ghl_client_rejected_total (\S+)$", metrics, re.M)
    assert rejected is not None and float(rejected[1]) >= 2  # one per refresh (reports retry)
    logged = harness.logs().count("GHL refused the app's client credentials")
    assert logged == 1
    for name, value in harness.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env but the bridge's environment
    out = io.StringIO()
    assert await cli.run(["check-config"], out=out) == 1
    line = next(x for x in out.getvalue().splitlines() if "GHL app" in x)
    assert line.startswith("FAIL") and "HTTP 401 invalid_client" in line
    assert "not-the-apps-secret" not in out.getvalue() + harness.logs()
