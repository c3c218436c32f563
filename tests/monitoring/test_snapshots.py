"""Snapshots each minute (platform and tenants), pruning by retention, and
the beat jobs' schedules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from instances.models import ConnectionEvent, EventKind, Gateway, Status, Tenant
from monitoring import alerts, retention, snapshots
from monitoring.models import Alert, HealthSnapshot
from tests.monitoring.conftest import make_instances, make_platform_healthy

pytestmark = pytest.mark.django_db


def test_a_snapshot_records_the_platform_and_each_tenant(tenant: Tenant, gateway: Gateway) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 3)
    make_instances(tenant, gateway, Status.BACKING_OFF, 1)
    make_instances(other, gateway, Status.CONNECTED, 2)
    assert snapshots.record() == 3
    platform = HealthSnapshot.objects.get(tenant=None)
    assert (platform.score, platform.status, platform.connected, platform.expected) == (83, "pass", 5, 6)
    assert platform.live_workers == 1
    mine = HealthSnapshot.objects.get(tenant=tenant)
    assert (mine.score, mine.connected, mine.expected, mine.status) == (75, 3, 4, "")
    assert mine.by_status["backing_off"] == 1


def test_prune_keeps_what_is_within_retention(tenant: Tenant, gateway: Gateway, settings: Any) -> None:
    make_platform_healthy()
    now = timezone.now()
    [instance] = make_instances(tenant, gateway, Status.CONNECTED, 1)
    HealthSnapshot.objects.create(at=now - dt.timedelta(hours=settings.BLAST_SNAPSHOT_RETENTION_H + 1), score=1)
    HealthSnapshot.objects.create(at=now - dt.timedelta(hours=1), score=2)
    old_alert = Alert.objects.create(kind="score_low", status="firing", severity="warning", summary="old")
    Alert.objects.filter(pk=old_alert.pk).update(
        created_at=now - dt.timedelta(days=settings.BLAST_ALERT_RETENTION_DAYS + 1)
    )
    Alert.objects.create(kind="score_low", status="resolved", severity="info", summary="new")
    old = now - dt.timedelta(days=settings.BLAST_EVENT_RETENTION_DAYS + 1)
    ConnectionEvent.objects.create(instance=instance, kind=EventKind.ATTEMPT, at=old)
    ConnectionEvent.objects.create(instance=instance, kind=EventKind.READY)
    alerts.evaluate()

    assert retention.prune() == {"snapshots": 1, "alerts": 1, "events": 1}
    assert list(HealthSnapshot.objects.values_list("score", flat=True)) == [2]
    assert list(Alert.objects.values_list("summary", flat=True)) == ["new"]
    assert list(ConnectionEvent.objects.values_list("kind", flat=True)) == ["ready"]


def test_the_beat_jobs_are_scheduled() -> None:
    tasks = set(PeriodicTask.objects.filter(enabled=True).values_list("task", flat=True))
    assert {
        "monitoring.heartbeat",
        "monitoring.record_snapshot",
        "monitoring.evaluate_alerts",
        "monitoring.prune",
    } <= tasks
    snapshot = PeriodicTask.objects.get(task="monitoring.record_snapshot")
    assert (snapshot.interval.every, snapshot.interval.period) == (60, "seconds")
