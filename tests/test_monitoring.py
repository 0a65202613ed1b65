"""What ships for monitoring (deploy/): the Prometheus rules pass promtool's own check and unit
tests, and the rules and the Grafana dashboard query only metrics the bridge exports; `/metrics`
maps each Cast key to the locations it serves, with their thresholds, and carries the process
metrics."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.cast.keys import key_label
from app.config import Settings
from app.devkit.harness import CAST_KEY
from app.locations.repository import LocationSettingsRepository
from app.locations.schemas import LocationSettings
from app.metrics import DEFAULT_LOCATION, Counters, KeyLocation
from app.metrics.http import HttpMetrics
from app.metrics.service import MetricsService, key_locations_reader
from app.oauth.crypto import TokenCipher
from app.store import Store

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "cast-ghl-bridge.json"
OWN_KEY = "cast_" + "5a" * 32
CIPHER = TokenCipher(b"J9t8m2Q3e4r5t6y7u8i9o0p1a2s3d4f5g6h7j8k9l0Q=")
# Words of PromQL that look like metric names: functions, keywords, label and recorded names.
PROMQL_WORDS = re.compile(r"\b(bridge_[a-z_]+|process_[a-z_]+|python_[a-z_]+)\b")


def exported_names() -> set[str]:
    """Every sample name the bridge's registries can export (counters' `_total`, histograms'
    `_bucket`/`_count`/`_sum`), whether or not a series has been written yet."""
    names = set()
    for registry in (Counters().registry, HttpMetrics().registry):
        for family in registry.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
            }.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
    return names


def queried_names(text: str) -> set[str]:
    return set(PROMQL_WORDS.findall(text))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool must run in CI (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent, check=False
    )


def test_the_alert_rules_pass_promtool_check():
    checked = promtool("check", "rules", RULES.name)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_pass_their_promtool_unit_tests():
    tested = promtool("test", "rules", RULES_TEST.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_alert_rules_cover_every_figure_the_operator_is_alerted_on():
    alerts = set(re.findall(r"- alert: (\w+)", RULES.read_text()))

    assert alerts == {
        "CastCreditsLow",
        "OutboundFailuresRising",
        "ReceiptsUnconfirmed",
        "CastKeySlowedBy429",
        "QueueBacklog",
        "StoreDown",
        "TokenRefreshFailing",
    }


def test_the_alert_rules_query_only_metrics_the_bridge_exports():
    missing = queried_names(RULES.read_text()) - exported_names()

    assert not missing, f"rules query metrics nothing exports: {sorted(missing)}"


def test_the_dashboard_is_grafana_json_whose_queries_name_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]

    assert dashboard["title"] and queries
    missing = set().union(*map(queried_names, queries)) - exported_names()
    assert not missing, f"the dashboard queries metrics nothing exports: {sorted(missing)}"


def test_the_dashboard_shows_every_figure_an_alert_is_raised_on():
    queried = " ".join(
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    )

    for name in (
        "bridge_cast_credits",
        "bridge_location_low_credit_threshold",
        "bridge_messages_total",
        "bridge_cast_key_rate",
        "bridge_queue_oldest_due_age_seconds",
        "bridge_store_up",
        "bridge_token_refreshes_total",
        "process_resident_memory_bytes",
    ):
        assert name in queried, name


# /metrics ------------------------------------------------------------------------------------
def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_the_exposition_carries_the_process_metrics():
    names = {name for name, _ in samples(Counters().render())}

    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "process_open_fds" in names
    assert "python_info" in names


def test_key_locations_replace_the_previous_scrapes_series():
    counters = Counters()
    counters.set_key_locations([KeyLocation("loc-1", "k1", 500), KeyLocation("loc-2", "k2", 10)])
    counters.set_key_locations([KeyLocation("loc-1", "k1", 300)])

    found = samples(counters.render())
    assert found[("bridge_cast_key_location", frozenset({("key", "k1"), ("location_id", "loc-1")}))]
    assert (
        found[("bridge_location_low_credit_threshold", frozenset({("location_id", "loc-1")}))]
        == 300
    )
    assert not any(("location_id", "loc-2") in labels for _, labels in found)


def test_a_key_back_at_full_rate_drops_its_slowed_series():
    counters = Counters()
    counters.set_key_rates({"k1": 2.5})
    counters.set_key_rates({})

    assert not any(name == "bridge_cast_key_rate" for name, _ in samples(counters.render()))


def settings(**overrides: object) -> Settings:
    return Settings(
        ghl_client_id="client",
        ghl_client_secret="secret",  # type: ignore[arg-type]
        cast_api_key=CAST_KEY,  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
        **overrides,  # type: ignore[arg-type]
    )


async def no_adapted_rates() -> dict[str, float]:
    """`CastPacer.rates` when no key drew a 429."""
    return {}


async def test_the_scrape_maps_each_own_key_to_its_location_with_its_threshold(store: Store):
    repository = LocationSettingsRepository(store, CIPHER)
    now = time.time()
    await repository.put(
        LocationSettings(
            location_id="loc-own", cast_api_key=OWN_KEY, low_credit_threshold=500, updated_at=now
        )
    )
    await repository.put(
        LocationSettings(location_id="loc-default-threshold", cast_api_key=OWN_KEY, updated_at=now)
    )
    await repository.put(LocationSettings(location_id="loc-on-default-key", updated_at=now))
    counters = Counters()
    service = MetricsService(
        counters,
        {},
        CollectorRegistry(),
        key_rates=no_adapted_rates,
        key_locations=key_locations_reader(settings(low_credit_threshold=40), repository),
    )

    found = samples(await service.exposition())

    def location(key: str, location_id: str) -> float | None:
        labels = frozenset({("key", key), ("location_id", location_id)})
        return found.get(("bridge_cast_key_location", labels))

    def threshold(location_id: str) -> float | None:
        labels = frozenset({("location_id", location_id)})
        return found.get(("bridge_location_low_credit_threshold", labels))

    assert location(key_label(OWN_KEY), "loc-own") == 1
    assert location(key_label(OWN_KEY), "loc-default-threshold") == 1
    assert location(key_label(CAST_KEY), DEFAULT_LOCATION) == 1
    assert (threshold("loc-own"), threshold("loc-default-threshold")) == (500, 40)
    assert threshold(DEFAULT_LOCATION) == 40
    assert threshold("loc-on-default-key") is None  # it sends with the default key
    assert OWN_KEY not in (await service.exposition()).decode()
