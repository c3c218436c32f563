"""``/metrics``: Prometheus metrics, every name under ``blast_``.

Everything is computed at scrape time by one custom collector from
aggregate queries, so any web process answers for the whole platform and no
process has to push anything. No metric has a per-instance (or per-worker)
label: the label values are statuses, reasons and event kinds, a few dozen
series in all.

The ``*_total`` counters count connection events: the tally the alert
evaluator has folded (which survives pruning) plus the events appended since
its cursor (see :mod:`monitoring.retention` for why they never go down).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

from django.apps import apps
from django.conf import settings
from django.db import Error as DatabaseError
from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from instances import throttle
from instances.models import ConnectionEvent, EventKind, Gateway, GatewayState, WorkerHeartbeat
from instances.reasons import Reason
from monitoring import health
from monitoring.alerts import CURSOR_KEY
from monitoring.counts import count_instances
from monitoring.models import AlertDelivery, AlertState, DeliveryStatus, EventTally
from monitoring.transitions import Cursor

logger = logging.getLogger("blast.monitoring")

PREFIX = "blast_"

BREAKER_TRANSITIONS = {
    EventKind.BREAKER_OPENED: "opened",
    EventKind.BREAKER_HALF_OPEN: "half_open",
    EventKind.BREAKER_CLOSED: "closed",
}
MANUAL_ACTIONS = {
    EventKind.CONNECT: "connect",
    EventKind.DISCONNECT_REQUESTED: "disconnect",
    EventKind.FORCE_RETRY: "force_retry",
    EventKind.RESET_BREAKER: "reset_breaker",
}


def event_totals() -> dict[tuple[str, str], int]:
    """Connection events ever appended, by (kind, reason), consistently.

    The tally and the cursor are read twice around each other: if the
    evaluator folded events in between, read again, so that no event is
    counted both in the tally and past the cursor.
    """
    for _ in range(5):
        before = AlertState.objects.filter(key=CURSOR_KEY).values_list("data", flat=True).first()
        totals: dict[tuple[str, str], int] = {
            (kind, reason): count for kind, reason, count in EventTally.objects.values_list("kind", "reason", "count")
        }
        after = AlertState.objects.filter(key=CURSOR_KEY).values_list("data", flat=True).first()
        if before == after:
            break
    cursor = Cursor.from_json(after)
    unread = Q(id__gt=cursor.last_id)
    if cursor.gaps:
        unread |= Q(id__in=cursor.unread_ids())
    recent = ConnectionEvent.objects.filter(unread).order_by().values_list("kind", "reason").annotate(n=Count("id"))
    for kind, reason, n in recent:
        totals[(kind, reason)] = totals.get((kind, reason), 0) + n
    return totals


def _counters(totals: dict[tuple[str, str], int]) -> Iterator[Metric]:
    attempts = CounterMetricFamily(f"{PREFIX}connection_attempts", "Connection attempts made by the workers.")
    attempts.add_metric([], sum(n for (kind, _), n in totals.items() if kind == EventKind.ATTEMPT))
    yield attempts

    disconnects = CounterMetricFamily(
        f"{PREFIX}disconnects", "Sessions that ended, by reason (PROTOCOL.md section 4).", labels=["reason"]
    )
    by_reason = {str(reason): 0 for reason in Reason}
    for (kind, reason), n in totals.items():
        if kind == EventKind.DISCONNECT:
            by_reason[reason or "unknown"] = by_reason.get(reason or "unknown", 0) + n
    for reason, n in sorted(by_reason.items()):
        disconnects.add_metric([reason], n)
    yield disconnects

    transitions = CounterMetricFamily(
        f"{PREFIX}breaker_transitions", "Circuit breaker transitions, by the state entered.", labels=["to"]
    )
    for kind, label in BREAKER_TRANSITIONS.items():
        transitions.add_metric([label], sum(n for (k, _), n in totals.items() if k == kind))
    yield transitions

    manual = CounterMetricFamily(
        f"{PREFIX}manual_actions", "Commands by operators and tenants, by action.", labels=["action"]
    )
    for kind, label in MANUAL_ACTIONS.items():
        manual.add_metric([label], sum(n for (k, _), n in totals.items() if k == kind))
    yield manual

    lost = CounterMetricFamily(f"{PREFIX}sessions_lost", "Sessions found lost with their worker by beat.")
    lost.add_metric([], sum(n for (k, _), n in totals.items() if k == EventKind.LOST))
    yield lost


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(f"{PREFIX}{name}", documentation)
    if value is not None:
        gauge.add_metric([], value)
    return gauge


def _message_counts() -> dict[str, int] | None:
    """Messages by status, once the messages model exists (campaigns)."""
    try:
        model = apps.get_model(settings.BLAST_METRICS_MESSAGE_MODEL)
    except (LookupError, ValueError):
        return None
    if not any(f.name == "status" for f in model._meta.get_fields()):
        return None
    rows = model._default_manager.order_by().values_list("status").annotate(n=Count("pk"))
    return {str(status): n for status, n in rows}


class PlatformCollector(Collector):
    """Collects every ``blast_`` metric from the database and Redis."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        up = GaugeMetricFamily(
            f"{PREFIX}dependency_up", "Whether a dependency answers (1) or not (0).", labels=["dependency"]
        )
        redis_check = health.check_redis()
        up.add_metric(["redis"], 1 if redis_check.status == health.PASS else 0)
        try:
            metrics = list(self._from_database(now))
        except DatabaseError:
            logger.warning("⚠️ /metrics: the database does not answer")
            up.add_metric(["database"], 0)
            yield up
            return
        up.add_metric(["database"], 1)
        yield up
        yield from metrics
        yield from self._celery(now)
        yield from _auth_failures()

    def _from_database(self, now: dt.datetime) -> Iterator[Metric]:
        counts = count_instances()
        by_status = GaugeMetricFamily(f"{PREFIX}instances", "Instances by observed status.", labels=["status"])
        for status, n in sorted(counts.by_status.items()):
            by_status.add_metric([status], n)
        yield by_status
        yield _gauge("instances_expected", "Instances expected to be connected (docs/OPERATIONS.md).", counts.expected)
        breakers = GaugeMetricFamily(f"{PREFIX}breakers", "Circuit breakers by state.", labels=["state"])
        for state, n in sorted(counts.breakers.items()):
            breakers.add_metric([state], n)
        yield breakers
        yield _gauge("breakers_open", "Open circuit breakers.", counts.open_breakers)
        yield _gauge("health_score", "Health score, 0-100 (pass from BLAST_HEALTH_PASS_SCORE).", counts.score)
        gateways = GaugeMetricFamily(
            f"{PREFIX}gateways", "Enabled gateways by state (up, down: instances.outages).", labels=["state"]
        )
        by_state = dict(Gateway.objects.filter(enabled=True).order_by().values_list("state").annotate(n=Count("id")))
        for state in GatewayState:
            gateways.add_metric([str(state)], by_state.get(str(state), 0))
        yield gateways

        stale_before = now - health.worker_stale_after()
        workers = WorkerHeartbeat.objects.filter(stopped_at__isnull=True).aggregate(
            live=Count("id", filter=Q(last_seen__gte=stale_before)),
            stale=Count("id", filter=Q(last_seen__lt=stale_before, last_seen__gte=now - dt.timedelta(hours=1))),
            sessions=Sum("sessions_held", filter=Q(last_seen__gte=stale_before)),
        )
        live = GaugeMetricFamily(
            f"{PREFIX}workers",
            "Connection workers not stopped: live (fresh heartbeat) or stale (silent for up to an hour).",
            labels=["state"],
        )
        live.add_metric(["live"], workers["live"])
        live.add_metric(["stale"], workers["stale"])
        yield live
        yield _gauge("worker_sessions_held", "Sessions held by live connection workers.", workers["sessions"] or 0)
        per_worker = GaugeMetricFamily(
            f"{PREFIX}worker_sessions", "Sessions held by each live connection worker.", labels=["worker"]
        )
        capacity = GaugeMetricFamily(
            f"{PREFIX}worker_capacity",
            "The most sessions each live connection worker holds (BLAST_WORKER_CAPACITY).",
            labels=["worker"],
        )
        for worker_id, held, most in WorkerHeartbeat.objects.filter(
            stopped_at__isnull=True, last_seen__gte=stale_before
        ).values_list("worker_id", "sessions_held", "capacity"):
            per_worker.add_metric([worker_id], held)
            capacity.add_metric([worker_id], most)
        yield per_worker
        yield capacity
        oldest = (
            WorkerHeartbeat.objects.filter(stopped_at__isnull=True, last_seen__gte=stale_before)
            .order_by("last_seen")
            .values_list("last_seen", flat=True)
            .first()
        )
        yield _gauge(
            "worker_heartbeat_age_seconds",
            "Age of the oldest heartbeat among live connection workers.",
            (now - oldest).total_seconds() if oldest else None,
        )

        _, last_run = health.beat_last_run()
        yield _gauge(
            "beat_last_run_age_seconds",
            "Seconds since beat last ran a recovery job.",
            (now - last_run).total_seconds() if last_run else None,
        )

        yield from _counters(event_totals())

        deliveries = GaugeMetricFamily(
            f"{PREFIX}alert_deliveries", "Alert webhook deliveries by status.", labels=["status"]
        )
        by_delivery = dict(
            AlertDelivery.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        for status in DeliveryStatus:
            deliveries.add_metric([str(status)], by_delivery.get(str(status), 0))
        yield deliveries

        messages = _message_counts()
        if messages is not None:
            gauge = GaugeMetricFamily(f"{PREFIX}messages", "Messages by status.", labels=["status"])
            for status, n in sorted(messages.items()):
                gauge.add_metric([status], n)
            yield gauge

    def _celery(self, now: dt.datetime) -> Iterator[Metric]:
        try:
            beat = health.celery_heartbeat()
        except (RedisError, OSError):
            beat = None
        age: float | None = None
        if beat is not None:
            age = max(0.0, now.timestamp() - float(beat.get("at", 0)))
        yield _gauge("celery_heartbeat_age_seconds", "Seconds since a Celery worker ran the heartbeat task.", age)


def _auth_failures() -> Iterator[Metric]:
    """Failed logins and bad API keys, and the attempts refused for them
    (instances.throttle): kept in Redis, so every web process counts."""
    totals = throttle.totals()
    if totals is None:
        return
    failures = CounterMetricFamily(
        f"{PREFIX}auth_failures", "Failed admin logins and requests with an invalid API key.", labels=["door"]
    )
    refused = CounterMetricFamily(
        f"{PREFIX}auth_throttled", "Attempts refused because of earlier failures.", labels=["door"]
    )
    for door in throttle.DOORS:
        failures.add_metric([door], totals[(door, "failures")])
        refused.add_metric([door], totals[(door, "throttled")])
    yield failures
    yield refused


def registry() -> CollectorRegistry:
    """A registry holding only the platform collector (no process metrics,
    whose names would not start with ``blast_``)."""
    return _REGISTRY


_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(PlatformCollector())
