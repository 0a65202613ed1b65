"""The Counters facade over Prometheus metrics: every counted name has a metric, labels stay
bounded and never carry a phone number."""

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.metrics import EVENTS, MAX_REASONS_PER_METRIC, Counters

APP = Path(__file__).resolve().parents[1] / "app"


def samples(counters: Counters) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(counters.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_every_name_the_code_counts_has_a_metric():
    used = set()
    for path in APP.rglob("*.py"):
        used |= set(re.findall(r"counters\.inc\(\s*\"([a-z_]+)\"", path.read_text()))
    assert used, "no call sites found"
    assert used <= set(EVENTS), f"names without a metric: {sorted(used - set(EVENTS))}"


def test_a_name_increments_its_labelled_metric_and_the_snapshot():
    counters = Counters()
    counters.inc("messages_received")
    counters.inc("messages_failed", reason="REJECTD")
    counters.inc("location_tokens_failed", 3)

    found = samples(counters)
    assert found[("bridge_webhooks_total", (("outcome", "queued"),))] == 1
    assert found[("bridge_messages_total", (("reason", "REJECTD"), ("status", "failed")))] == 1
    assert found[("bridge_location_tokens_total", (("outcome", "failed"),))] == 3
    assert counters.snapshot() == {
        "location_tokens_failed": 3,
        "messages_failed": 1,
        "messages_failed_REJECTD": 1,
        "messages_received": 1,
    }


def test_a_reason_that_is_not_a_short_identifier_becomes_other():
    counters = Counters()
    for reason in ("+639171234567", "09171234567", "has spaces", "x" * 41, "Bearer abc.def"):
        counters.inc("messages_failed", reason=reason)

    found = samples(counters)
    assert found[("bridge_messages_total", (("reason", "other"), ("status", "failed")))] == 5
    assert "9171234567" not in counters.render().decode()


def test_the_number_of_reasons_per_name_is_capped():
    counters = Counters()
    for n in range(MAX_REASONS_PER_METRIC + 10):
        counters.inc("messages_failed", reason=f"CODE_{n}")

    reasons = {
        labels
        for (name, labels) in samples(counters)
        if name == "bridge_messages_total" and ("status", "failed") in labels
    }
    assert len(reasons) == MAX_REASONS_PER_METRIC + 1  # the first ones, then "other"


def test_an_unknown_name_is_kept_in_the_snapshot_and_does_not_raise():
    counters = Counters()
    counters.inc("not_a_known_counter")
    assert counters.get("not_a_known_counter") == 1


def test_upstream_requests_are_timed_and_errors_counted_by_status():
    counters = Counters()
    observe = counters.upstream("cast")
    observe("send", 0.02, "200")
    observe("send", 0.5, "429")
    observe("status", 2.0, "timeout")

    found = samples(counters)
    hist = ("bridge_upstream_request_duration_seconds_count",)
    assert found[(*hist, (("operation", "send"), ("upstream", "cast")))] == 2
    errors = "bridge_upstream_errors_total"
    assert found[(errors, (("operation", "send"), ("status", "429"), ("upstream", "cast")))] == 1
    assert (
        found[(errors, (("operation", "status"), ("status", "timeout"), ("upstream", "cast")))] == 1
    )
    assert (errors, (("operation", "send"), ("status", "200"), ("upstream", "cast"))) not in found


def test_two_apps_in_one_process_keep_their_own_values():
    first, second = Counters(), Counters()
    first.inc("inbound_received")
    assert ("bridge_inbound_total", (("event", "received"),)) not in samples(second)
    assert samples(first)[("bridge_inbound_total", (("event", "received"),))] == 1


def test_queue_gauges_show_depth_and_how_overdue_the_oldest_item_is():
    counters = Counters()
    counters.set_queue("outbound", {"pending": 4, "done": 10}, oldest_due=100.0, now=130.0)
    counters.set_queue("inbound", {"pending": 0, "done": 2}, oldest_due=None, now=130.0)
    counters.set_queue("inbound", {"pending": 1, "done": 2}, oldest_due=200.0, now=130.0)

    found = samples(counters)
    assert found[("bridge_queue_items", (("queue", "outbound"), ("state", "pending")))] == 4
    assert found[("bridge_queue_oldest_due_age_seconds", (("queue", "outbound"),))] == 30
    assert found[("bridge_queue_oldest_due_age_seconds", (("queue", "inbound"),))] == 0
