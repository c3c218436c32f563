"""/metrics: Prometheus text, one prefix, no per-instance labels, counters
derived from the event log that never go down when old events are pruned."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from instances.models import BreakerState, ConnectionEvent, EventKind, Gateway, Status, Tenant, WorkerHeartbeat
from monitoring import alerts, retention
from tests.monitoring.conftest import make_instances, make_platform_healthy

pytestmark = pytest.mark.django_db


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def totals(samples: dict[Any, float]) -> dict[Any, float]:
    return {key: v for key, v in samples.items() if key[0].endswith("_total")}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_metric_is_blast_prefixed_and_has_no_instance_label(
    client: Client, tenant: Tenant, gateway: Gateway
) -> None:
    make_platform_healthy()
    instances = make_instances(tenant, gateway, Status.CONNECTED, 30)
    for instance in instances[:5]:
        ConnectionEvent.objects.create(instance=instance, kind=EventKind.DISCONNECT, reason="timed_out")
    samples = scrape(client)
    assert samples
    assert all(name.startswith("blast_") for name, _ in samples)
    label_names = {label for _, labels in samples for label, _ in labels}
    # A worker label is bounded by the workers, never by the instances.
    assert label_names <= {"status", "state", "reason", "to", "action", "dependency", "door", "worker"}
    assert len(samples) < 120  # bounded whatever the number of instances


def test_gauges_follow_the_database(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 8)
    make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 2, breaker=BreakerState.OPEN)
    samples = scrape(client)
    assert value(samples, "blast_instances", status="connected") == 8
    assert value(samples, "blast_instances", status="circuit_open") == 2
    assert value(samples, "blast_instances", status="logged_out") == 0
    assert value(samples, "blast_breakers_open") == 2
    assert value(samples, "blast_instances_expected") == 10
    assert value(samples, "blast_health_score") == 70
    assert value(samples, "blast_workers", state="live") == 1
    assert value(samples, "blast_dependency_up", dependency="redis") == 1
    assert value(samples, "blast_dependency_up", dependency="database") == 1
    assert value(samples, "blast_celery_heartbeat_age_seconds") < 30
    assert value(samples, "blast_beat_last_run_age_seconds") < 30


def test_each_live_worker_has_its_sessions_and_capacity(client: Client) -> None:
    beat = make_platform_healthy()
    WorkerHeartbeat.objects.filter(pk=beat.pk).update(sessions_held=1200, capacity=20_000)
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker_id="host-b-2-bb", host="b", pid=2, sessions_held=900, capacity=5000)
    # Stopped or silent workers are not exported.
    WorkerHeartbeat.objects.create(worker_id="host-c-3-cc", host="c", pid=3, stopped_at=now, capacity=5000)
    WorkerHeartbeat.objects.create(
        worker_id="host-d-4-dd", host="d", pid=4, last_seen=now - dt.timedelta(minutes=5), capacity=5000
    )
    samples = scrape(client)
    assert value(samples, "blast_worker_sessions", worker=beat.worker_id) == 1200
    assert value(samples, "blast_worker_capacity", worker=beat.worker_id) == 20_000
    assert value(samples, "blast_worker_sessions", worker="host-b-2-bb") == 900
    exported = {dict(labels).get("worker") for name, labels in samples if name == "blast_worker_sessions"}
    assert exported == {beat.worker_id, "host-b-2-bb"}


def test_counters_count_events_and_survive_pruning(
    client: Client, tenant: Tenant, gateway: Gateway, settings: Any
) -> None:
    [instance] = make_instances(tenant, gateway, Status.BACKING_OFF, 1)
    old = timezone.now() - dt.timedelta(days=settings.BLAST_EVENT_RETENTION_DAYS + 1)
    kinds = [
        (EventKind.ATTEMPT, ""),
        (EventKind.DISCONNECT, "timed_out"),
        (EventKind.ATTEMPT, ""),
        (EventKind.DISCONNECT, "unavailable"),
        (EventKind.BREAKER_OPENED, "unavailable"),
        (EventKind.RESET_BREAKER, ""),
        (EventKind.FORCE_RETRY, ""),
    ]
    for kind, reason in kinds:
        ConnectionEvent.objects.create(instance=instance, kind=kind, reason=reason, at=old)
    before = scrape(client)
    assert value(before, "blast_connection_attempts_total") == 2
    assert value(before, "blast_disconnects_total", reason="timed_out") == 1
    assert value(before, "blast_breaker_transitions_total", to="opened") == 1
    assert value(before, "blast_manual_actions_total", action="reset_breaker") == 1
    assert value(before, "blast_manual_actions_total", action="force_retry") == 1

    # Not yet read by the evaluator: pruning keeps them.
    assert retention.prune()["events"] == 0
    alerts.evaluate()  # folds them into the tally: the counters do not move
    assert totals(scrape(client)) == totals(before)
    assert retention.prune()["events"] == len(kinds)
    assert not ConnectionEvent.objects.exists()
    ConnectionEvent.objects.create(instance=instance, kind=EventKind.ATTEMPT)
    after = scrape(client)
    assert value(after, "blast_connection_attempts_total") == 3
    assert value(after, "blast_disconnects_total", reason="timed_out") == 1


def test_a_metrics_token_is_required_when_set(client: Client, settings: Any) -> None:
    settings.BLAST_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me")


def test_the_grafana_dashboard_uses_only_exported_metrics(client: Client) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "monitoring" / "grafana-dashboard.json").read_text())
    text = client.get("/metrics").content.decode()
    families = {family.name for family in text_string_to_metric_families(text)}
    # Counters are exported as <family>_total; blast_messages appears with
    # the campaigns app.
    known = families | {f"{name}_total" for name in families} | {"blast_messages"}
    used = set(re.findall(r"\bblast_[a-z_]+", json.dumps(dashboard)))
    assert used, "the dashboard queries no blast_ metric"
    assert used <= known, used - known
