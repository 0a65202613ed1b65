"""Prometheus metrics of one bridge process, behind the one call sites use: `counters.inc(name)`.

Every event the code counts has a name (`messages_delivered`, `inbound_unroutable`, ...); `EVENTS`
maps each name to a labelled Prometheus metric. A `reason` given with the name fills the metric's
variable label (a Cast error code, a carrier's DLR code, a delivery confirmation, an app webhook
type): it is reduced to a short identifier from a bounded set, so a label never carries a phone
number, a token or free text. The registry is per `Counters` (one per app), so apps created in one
process (tests) do not share values.

`snapshot()` keeps the counts by name (and `name_reason`) for the shutdown log line.
"""

import logging
import re
from collections import Counter as NameCounter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)

disable_created_metrics()  # no `*_created` series: they double the exposition for nothing

NAMESPACE = "bridge"
OTHER = "other"
MAX_REASONS_PER_METRIC = 50
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

# The variable label of each metric that takes a `reason`.
_REASON_LABELS = {
    "messages": "reason",
    "status_reports": "outcome",
    "app_webhooks": "type",
    "optouts": "source",
    "sends_refused_optout": "source",
    "dnd_updates": "outcome",
    "optout_syncs": "outcome",
    "cast_parts": "channel",
}


@dataclass(frozen=True, slots=True)
class Event:
    metric: str  # attribute of `Counters`
    labels: tuple[tuple[str, str], ...] = ()


def _event(metric: str, **labels: str) -> Event:
    return Event(metric, tuple(labels.items()))


EVENTS: dict[str, Event] = {
    # GHL webhooks (Delivery URL and app lifecycle)
    "messages_received": _event("webhooks", outcome="queued"),
    "webhooks_duplicate": _event("webhooks", outcome="duplicate"),
    "webhooks_ignored": _event("webhooks", outcome="ignored"),
    "webhooks_rejected_signature": _event("webhooks", outcome="rejected_signature"),
    "webhooks_rejected_payload": _event("webhooks", outcome="rejected_payload"),
    "webhooks_rejected_stale": _event("webhooks", outcome="rejected_stale"),
    "app_webhooks": _event("app_webhooks"),
    # Outbound messages: final status (reason = failure code, or how delivery was confirmed)
    "messages_delivered": _event("messages", status="delivered"),
    "messages_failed": _event("messages", status="failed"),
    "cast_sends": _event("cast_parts"),
    "cast_retries": _event("retries", step="cast_send"),
    "status_reported": _event("status_reports"),
    "status_report_retries": _event("retries", step="ghl_status"),
    "status_report_failed": _event("status_reports", outcome="gave_up"),
    # No installation and no token of its agency: GHL cannot be told (listed for the operator)
    "status_report_refused": _event("status_reports", outcome="refused_not_installed"),
    # Inbound SMS
    "inbound_received": _event("inbound", event="received"),
    "inbound_duplicate": _event("inbound", event="duplicate"),
    "inbound_delivered": _event("inbound", event="delivered"),
    "inbound_unroutable": _event("inbound", event="unroutable"),
    "inbound_failed": _event("inbound", event="failed"),
    "inbound_rerouted": _event("inbound", event="rerouted"),
    "inbound_discarded": _event("inbound", event="discarded"),
    "inbound_rejected_auth": _event("inbound", event="rejected_auth"),
    "inbound_rejected_payload": _event("inbound", event="rejected_payload"),
    "inbound_retries": _event("retries", step="ghl_inbound"),
    # Opt-outs (reason = source: keyword, cast, cast_refusal; operator: admin, cli)
    "optouts_recorded": _event("optouts", event="opt_out"),
    "optins_recorded": _event("optouts", event="opt_in"),
    "optouts_lifted": _event("optouts", event="lifted"),
    "sends_refused_optout": _event("sends_refused_optout"),
    "dnd_updates": _event("dnd_updates"),  # reason: set, cleared, unchanged, no_contact, failed
    "dnd_retries": _event("retries", step="ghl_dnd"),
    "optout_syncs": _event("optout_syncs"),  # reason: ok, failed
    # OAuth
    "token_refreshes": _event("token_refreshes", outcome="ok"),
    "token_refresh_failures": _event("token_refreshes", outcome="failed"),
    "installations_needing_reauth": _event("reauth"),
    "ghl_client_rejected": _event("ghl_client_rejected"),
    "location_tokens_from_company": _event("location_tokens", outcome="obtained"),
    "location_tokens_failed": _event("location_tokens", outcome="failed"),
    "installs_completed": _event("installs", outcome="completed"),
    "installs_refused": _event("installs", outcome="refused"),
    "installs_failed": _event("installs", outcome="failed"),
    "installs_missing_scopes": _event("installs", outcome="missing_scopes"),
    # Operator actions (admin API and CLI)
    "admin_requeued": _event("admin_actions", action="requeue"),
    "admin_sender_id_set": _event("admin_actions", action="set_sender_id"),
    "admin_sender_id_unassigned": _event("admin_actions", action="unassign_sender_id"),
    "admin_optout_lifted": _event("admin_actions", action="lift_optout"),
}

DEFAULT_LOCATION = "default"  # the location_id label of the default CAST_API_KEY's series


@dataclass(frozen=True, slots=True)
class KeyLocation:
    """A location with its own Cast key (or DEFAULT_LOCATION), the key's label and the
    location's low-credit threshold."""

    location_id: str
    key: str
    threshold: int


RequestObserver = Callable[[str, float, str], None]
"""`observe(operation, seconds, status)`: one upstream HTTP request; `status` is the HTTP status
code as text, or `timeout` / `connection_error`."""


def unobserved(operation: str, seconds: float, status: str) -> None:
    """Records nothing: the observer of requests no /metrics serves (a command's, app/cli.py)."""


class Counters:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._names: NameCounter[str] = NameCounter()
        self._unlabelled: dict[str, Callable[[int], None]] = {}  # `inc` of names without a reason
        self._reasons: dict[str, set[str]] = {}

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=self.registry)

        self.webhooks = counter(
            "webhooks",
            "GHL webhooks received, by outcome (queued, duplicate, rejected_...)",
            ("outcome",),
        )
        self.app_webhooks = counter(
            "app_webhooks", "App lifecycle webhooks handled, by type", ("type",)
        )
        self.messages = counter(
            "messages",
            "Outbound messages by final status; reason: the failure code (Cast error_code, carrier "
            "DLR code, INVALID_PHONE, ...) or, for delivered, confirmed/unconfirmed/accepted",
            ("status", "reason"),
        )
        self.cast_parts = counter(
            "cast_parts_accepted",
            "Message parts Cast accepted, by channel (sms: /sms/send, sim: the SIM gateway)",
            ("channel",),
        )
        self.retries = counter("retries", "Retries scheduled, by step", ("step",))
        self.status_reports = counter(
            "status_reports", "Status reports to GHL, by outcome", ("outcome",)
        )
        self.inbound = counter("inbound", "Inbound SMS, by event", ("event",))
        self.optouts = counter(
            "optouts",
            "Opt-outs recorded, opt-ins, and opt-outs lifted by an operator, by source",
            ("event", "source"),
        )
        self.sends_refused_optout = counter(
            "sends_refused_optout",
            "Outbound messages not sent because the recipient opted out, by the opt-out's source",
            ("source",),
        )
        self.dnd_updates = counter(
            "ghl_dnd_updates", "Contact SMS DND updates in GHL, by outcome", ("outcome",)
        )
        self.optout_syncs = counter(
            "cast_optout_syncs", "Reads of Cast's unsubscribe list, by outcome", ("outcome",)
        )
        self.token_refreshes = counter(
            "token_refreshes", "GHL OAuth token refreshes, by outcome", ("outcome",)
        )
        self.reauth = counter(
            "installations_needing_reauth", "Installations GHL refused to refresh (re-install)"
        )
        self.ghl_client_rejected = counter(
            "ghl_client_rejected",
            "Token refreshes GHL refused for the app's own client id/secret (an app-level fault)",
        )
        self.location_tokens = counter(
            "location_tokens", "Location tokens from an agency token, by outcome", ("outcome",)
        )
        self.installs = counter("installs", "OAuth installs, by outcome", ("outcome",))
        self.admin_actions = counter("admin_actions", "Operator actions, by action", ("action",))
        self.upstream_seconds = Histogram(
            "upstream_request_duration_seconds",
            "Requests to Cast and GHL, by upstream and operation",
            ("upstream", "operation"),
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=UPSTREAM_BUCKETS,
        )
        self.upstream_errors = counter(
            "upstream_errors",
            "Cast and GHL requests that failed, by HTTP status (or timeout, connection_error)",
            ("upstream", "operation", "status"),
        )
        self.queue_items = Gauge(
            "queue_items",
            "Items in a work queue by state (outbound = the outbox), read at scrape time",
            ("queue", "state"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.queue_overdue = Gauge(
            "queue_oldest_due_age_seconds",
            "How long the most overdue pending item has been due (0: nothing waits), at scrape",
            ("queue",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.cast_key_rate = Gauge(
            "cast_key_rate",
            "Current send rate (msg/s) of a Cast key slowed down after a 429, by key label; "
            "keys not listed send at CAST_RATE_PER_KEY. Read at scrape",
            ("key",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.cast_rate_configured = Gauge(
            "cast_rate_per_key",
            "CAST_RATE_PER_KEY: the send rate (msg/s) of a key not slowed down",
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.credits = Gauge(
            "cast_credits",
            "Credits (SMS parts) left on a Cast account, by key label, as last read",
            ("key",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.key_locations = Gauge(
            "cast_key_location",
            '1 for each location a Cast key label sends for (location_id="default": the '
            "default CAST_API_KEY, which serves every location without its own key); join "
            "`bridge_cast_credits` and `bridge_cast_key_rate` on `key` with it. Read at scrape",
            ("key", "location_id"),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.credit_thresholds = Gauge(
            "location_low_credit_threshold",
            "The credits below which a location's Cast account is low: its own setting, else "
            'LOW_CREDIT_THRESHOLD (location_id="default": the default key\'s). Read at scrape',
            ("location_id",),
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.store_up = Gauge(
            "store_up",
            "1 when the store answered the scrape's queue queries",
            namespace=NAMESPACE,
            registry=self.registry,
        )

        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        PlatformCollector(registry=self.registry)  # python_info

    # Counting -----------------------------------------------------------------------------
    def inc(self, name: str, amount: int = 1, *, reason: str | None = None) -> None:
        self._names[name] += amount
        if reason is None and (inc := self._unlabelled.get(name)) is not None:
            inc(amount)  # the labelled series looked up once (`labels` costs a lock and a check)
            return
        if reason is not None:
            self._names[f"{name}_{self._bounded(name, reason)}"] += amount
        event = EVENTS.get(name)
        if event is None:
            log.warning("unknown counter name", extra={"counter": name})
            return
        labels = dict(event.labels)
        variable = _REASON_LABELS.get(event.metric)
        if variable is not None and variable not in labels:
            labels[variable] = self._bounded(name, reason) if reason else OTHER
        metric = getattr(self, event.metric)
        series = metric.labels(**labels) if labels else metric
        if reason is None:
            self._unlabelled[name] = series.inc
        series.inc(amount)

    def _bounded(self, name: str, reason: str) -> str:
        """`reason` if it is a short identifier and one of the first few seen for `name`."""
        if not _REASON.fullmatch(reason):
            return OTHER
        seen = self._reasons.setdefault(name, set())
        if reason not in seen:
            if len(seen) >= MAX_REASONS_PER_METRIC:
                return OTHER
            seen.add(reason)
        return reason

    def get(self, name: str) -> int:
        return self._names[name]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._names.items()))

    # Upstream requests --------------------------------------------------------------------
    def upstream(self, name: str) -> RequestObserver:
        """The observer a Cast or GHL client reports each request to."""

        def observe(operation: str, seconds: float, status: str) -> None:
            self.upstream_seconds.labels(name, operation).observe(seconds)
            if not status.isdigit() or int(status) >= 400:
                self.upstream_errors.labels(name, operation, status).inc()

        return observe

    def set_credits(self, key_label: str, credits: int) -> None:
        self.credits.labels(key_label).set(credits)

    # Queues (read at scrape time) ---------------------------------------------------------
    def set_queue(
        self, queue: str, counts: dict[str, int], oldest_due: float | None, now: float
    ) -> None:
        for state, count in counts.items():
            self.queue_items.labels(queue, state).set(count)
        age = max(now - oldest_due, 0.0) if oldest_due is not None else 0.0
        self.queue_overdue.labels(queue).set(age)

    def set_key_rates(self, rates: dict[str, float]) -> None:
        self.cast_key_rate.clear()  # a key back at full rate is no longer listed
        for key, rate in rates.items():
            self.cast_key_rate.labels(key).set(rate)

    def set_key_locations(self, keys: Sequence[KeyLocation]) -> None:
        """Which key serves which location, and each location's low-credit threshold (series of
        locations no longer listed are dropped)."""
        self.key_locations.clear()
        self.credit_thresholds.clear()
        for entry in keys:
            self.key_locations.labels(entry.key, entry.location_id).set(1)
            self.credit_thresholds.labels(entry.location_id).set(entry.threshold)

    def render(self) -> bytes:
        return generate_latest(self.registry)
