"""/health against real dependencies stopped and started: a private
redis-server, and real connection worker and Celery (with beat) processes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from instances.models import WorkerHeartbeat
from monitoring import health
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.schedules import install_schedules
from tests.monitoring.conftest import PrivateRedis, make_platform_healthy


def get_health(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/health")
    return response.status_code, json.loads(response.content)


@pytest.mark.django_db
def test_redis_down_fails_and_recovers(client: Client, settings: Any, private_redis: PrivateRedis) -> None:
    settings.REDIS_URL = private_redis.url
    make_platform_healthy()
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "pass"), body

    private_redis.stop()
    code, body = get_health(client)
    assert (code, body["status"]) == (503, "fail")
    assert body["checks"]["redis:responseTime"][0]["status"] == "fail"
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200

    private_redis.start()
    # The restarted Redis kept nothing: the next heartbeat task writes again.
    health.write_celery_heartbeat("celery@test")
    code, body = get_health(client)
    assert (code, body["status"]) == (200, "pass"), body
    assert client.get("/health/ready").status_code == 200


def wait_status(client: Client, status: str, timeout: float = 60) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> dict[str, Any] | None:
        seen[:] = [get_health(client)[1]]
        return seen[0] if seen[0]["status"] == status else None

    return wait_until(reached, timeout=timeout, interval=0.25, message=f"/health {status} (last: {seen})")


def test_no_live_connection_worker_fails_until_one_starts(platform: Platform, client: Client) -> None:
    # Real Celery with beat: the recovery jobs and the Celery heartbeat run.
    install_schedules(**{"monitoring.heartbeat": 1})
    platform.start_celery()
    worker = platform.start_worker()

    body = wait_status(client, "pass")
    assert body["checks"]["connection-workers:live"][0]["observedValue"] == 1
    assert body["checks"]["celery-worker:lastTask"][0]["status"] == "pass"
    assert body["checks"]["celery-beat:lastRun"][0]["status"] == "pass"

    # A clean stop marks the heartbeat stopped: fail at once.
    worker.terminate()
    body = wait_status(client, "fail", timeout=10)
    assert body["checks"]["connection-workers:live"][0]["status"] == "fail"
    assert client.get("/health").status_code == 503

    second = platform.start_worker()
    wait_status(client, "pass")

    # kill -9: no goodbye; fail once the heartbeat is three intervals old.
    second.kill()
    wait_status(client, "fail", timeout=30)
    # Its heartbeat row is still there, not stopped: only its age tells.
    assert WorkerHeartbeat.objects.get(worker_id=second.name).stopped_at is None
