"""/health, /health/live and /health/ready against the real database and
Redis, with the platform's state written as the workers and beat write it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from instances.models import BreakerState, Gateway, Instance, Status, Tenant, WorkerHeartbeat
from monitoring import health
from tests.fixtures.schedules import RECOVERY_JOB_NAMES
from tests.monitoring.conftest import make_instances, make_platform_healthy

pytestmark = pytest.mark.django_db


def get_health(client: Client, path: str = "/health") -> tuple[int, dict[str, Any]]:
    response = client.get(path)
    assert response["Content-Type"] == "application/health+json"
    assert "no-store" in response["Cache-Control"]
    return response.status_code, json.loads(response.content)


def check(body: dict[str, Any], name: str) -> dict[str, Any]:
    entries = body["checks"][name]
    assert len(entries) == 1
    return dict(entries[0])


def test_score_80_passes_and_79_warns(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    make_platform_healthy()
    connected = make_instances(tenant, gateway, Status.CONNECTED, 80)
    make_instances(tenant, gateway, Status.BACKING_OFF, 20)

    code, body = get_health(client)
    assert (code, body["status"], body["score"]) == (200, "pass", 80)
    assert body["instances"]["connected"] == 80
    assert body["instances"]["expected"] == 100
    assert body["instances"]["by_status"]["backing_off"] == 20
    assert check(body, "instances:score")["status"] == "pass"

    Instance.objects.filter(pk=connected[0].pk).update(status=Status.DISCONNECTED)
    code, body = get_health(client)
    assert (code, body["status"], body["score"]) == (200, "warn", 79)
    assert check(body, "instances:score")["status"] == "warn"
    assert "score 79 below 80" in body["output"]


def test_instances_waiting_on_their_owner_are_not_expected(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 4)
    for status in (Status.AWAITING_QR, Status.LOGGED_OUT, Status.REPLACED, Status.FORBIDDEN):
        make_instances(tenant, gateway, status, 3)
    make_instances(tenant, gateway, Status.STOPPED, 5, desired="stopped")

    _, body = get_health(client)
    assert body["instances"]["total"] == 4 + 12 + 5
    assert body["instances"]["expected"] == 4
    assert (body["status"], body["score"]) == ("pass", 100)


def test_open_breakers_cost_more_than_disconnects(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 9)
    make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1, breaker=BreakerState.OPEN)
    _, body = get_health(client)
    assert body["score"] == 85
    assert body["instances"]["open_breakers"] == 1
    assert body["instances"]["breakers"] == {"closed": 9, "open": 1, "half_open": 0}


def test_no_live_worker_fails(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    beat = make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 3)
    assert get_health(client)[1]["status"] == "pass"

    # Silent for longer than three heartbeat intervals: not live.
    stale = timezone.now() - dt.timedelta(seconds=3 * 5 + 1)
    WorkerHeartbeat.objects.filter(pk=beat.pk).update(last_seen=stale)
    code, body = get_health(client)
    assert (code, body["status"]) == (503, "fail")
    assert check(body, "connection-workers:live")["status"] == "fail"
    assert check(body, "connection-workers:live")["observedValue"] == 0

    # Fresh but stopped (a clean shutdown): not live either.
    WorkerHeartbeat.objects.filter(pk=beat.pk).update(last_seen=timezone.now(), stopped_at=timezone.now())
    assert get_health(client)[0] == 503

    WorkerHeartbeat.objects.filter(pk=beat.pk).update(stopped_at=None, sessions_held=3)
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "pass")
    workers = check(body, "connection-workers:live")
    assert (workers["observedValue"], workers["sessionsHeld"]) == (1, 3)


def test_live_capacity_below_the_running_instances_warns(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    beat = make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 5)
    WorkerHeartbeat.objects.filter(pk=beat.pk).update(capacity=5, sessions_held=5)
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "pass")
    assert check(body, "connection-workers:live")["capacity"] == 5

    make_instances(tenant, gateway, Status.BACKING_OFF, 1, prefix="extra")
    code, body = get_health(client)
    workers = check(body, "connection-workers:live")
    assert (code, body["status"], workers["status"]) == (200, "warn", "warn")
    assert "at most 5 sessions, 6 instances should run" in workers["output"]


def test_stalled_recovery_jobs_warn(client: Client) -> None:
    make_platform_healthy()
    assert get_health(client)[1]["status"] == "pass"
    long_ago = timezone.now() - dt.timedelta(seconds=61)
    PeriodicTask.objects.filter(name__in=RECOVERY_JOB_NAMES).update(last_run_at=long_ago)
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "warn")
    beat = check(body, "celery-beat:lastRun")
    assert beat["status"] == "warn" and beat["observedValue"] >= 61

    PeriodicTask.objects.filter(name__in=RECOVERY_JOB_NAMES).update(enabled=False)
    assert "no recovery job" in check(get_health(client)[1], "celery-beat:lastRun")["output"]


def test_a_silent_celery_worker_warns(client: Client) -> None:
    make_platform_healthy()
    health.write_celery_heartbeat("celery@old", timezone.now() - dt.timedelta(seconds=46))
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "warn")
    celery = check(body, "celery-worker:lastTask")
    assert celery["status"] == "warn" and celery["hostname"] == "celery@old"


def test_live_and_ready(client: Client) -> None:
    assert get_health(client, "/health/live") == (200, {"status": "pass", "serviceId": "blast"})
    code, body = get_health(client, "/health/ready")
    assert (code, body["status"]) == (200, "pass")
    assert set(body["checks"]) == {"database:responseTime", "redis:responseTime"}


def test_health_costs_the_same_queries_at_any_size(
    client: Client,
    tenant: Tenant,
    gateway: Gateway,
    django_assert_num_queries: Any,
    django_assert_max_num_queries: Any,
) -> None:
    make_platform_healthy()
    make_instances(tenant, gateway, Status.CONNECTED, 5)
    # One query per check and one for the counts, whatever the size.
    with django_assert_max_num_queries(5) as small:
        client.get("/health")
    make_instances(tenant, gateway, Status.CONNECTED, 2000)
    make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 100, breaker=BreakerState.OPEN)
    with django_assert_num_queries(len(small.captured_queries)):
        _, body = get_health(client)
    assert body["instances"]["total"] == 2105
