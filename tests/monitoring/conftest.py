"""Fixtures of the monitoring tests: real HTTP servers on 127.0.0.1 (a
webhook receiver, a stand-in /health), a private redis-server that tests
stop and start, instances in chosen states, and a platform made healthy.

Every test gets its own Redis key prefix, so that the Celery heartbeat key
of one test (or of a platform running on this machine) is never another's.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from django.utils import timezone

from instances import tokens
from instances.models import BreakerState, CircuitBreaker, Gateway, Instance, Tenant, WorkerHeartbeat
from monitoring import health
from monitoring.models import AlertWebhook
from tests.fixtures.platform import wait_until
from tests.fixtures.schedules import RECOVERY_JOB_NAMES
from tests.fixtures.webhooks import receiver  # noqa: F401  (a fixture of these tests)


@pytest.fixture(autouse=True)
def _own_redis_prefix(settings: Any) -> None:
    # The platform fixture sets its own prefix afterwards when a test uses it.
    settings.BLAST_REDIS_PREFIX = f"blast-test-mon-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a stand-in /health that tests can stop and start ---------------------------------


class FakeHealth:
    """Serves GET /health with the status a test sets; stop() closes the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = "pass"
        self.server: ThreadingHTTPServer | None = None
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.hits += 1
                body = json.dumps({"status": fake.status, "score": 90, "output": ""}).encode()
                self.send_response(503 if fake.status == "fail" else 200)
                self.send_header("Content-Type", "application/health+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        deadline = time.monotonic() + 20
        while True:
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def fake_health() -> Iterator[FakeHealth]:
    fake = FakeHealth()
    fake.start()
    yield fake
    fake.stop()


# -- a private redis-server ----------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that it can stop."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/ensure-redis.sh installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=20, message=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        wait_until(lambda: not self.answers(), timeout=20, message="redis-server stopped")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


# -- data --------------------------------------------------------------------------------


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def gateway() -> Gateway:
    return Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")


_TOKEN: list[str] = []


def make_instances(
    tenant: Tenant,
    gateway: Gateway,
    status: str,
    count: int,
    *,
    desired: str = "running",
    breaker: str = BreakerState.CLOSED,
    prefix: str | None = None,
) -> list[Instance]:
    """``count`` instances in ``status`` in a few queries (bulk)."""
    if not _TOKEN:
        _TOKEN.append(tokens.encrypt("test-token"))
    prefix = prefix or f"{status}-{uuid.uuid4().hex[:4]}-"
    instances = Instance.objects.bulk_create(
        [
            Instance(
                tenant=tenant,
                gateway=gateway,
                name=f"{prefix}{n}",
                status=status,
                desired_state=desired,
                token_encrypted=_TOKEN[0],
            )
            for n in range(count)
        ]
    )
    CircuitBreaker.objects.bulk_create([CircuitBreaker(instance=i, state=breaker) for i in instances])
    return instances


def make_platform_healthy(now: dt.datetime | None = None) -> WorkerHeartbeat:
    """A fresh worker heartbeat, recovery jobs that just ran, a Celery
    heartbeat: every check passes but the score's."""
    from django_celery_beat.models import PeriodicTask

    from tests.fixtures.schedules import ensure_recovery_schedules

    now = now or timezone.now()
    ensure_recovery_schedules(5)
    PeriodicTask.objects.filter(name__in=RECOVERY_JOB_NAMES).update(last_run_at=now)
    health.write_celery_heartbeat("celery@test", now)
    return WorkerHeartbeat.objects.create(
        worker_id=f"test-{uuid.uuid4().hex[:6]}", host="test", pid=1, last_seen=now, started_at=now
    )


def make_webhook(url: str, tenant: Tenant | None = None, secret: str = "s3cret", name: str = "ops") -> AlertWebhook:
    webhook = AlertWebhook(name=name, url=url, tenant=tenant)
    webhook.set_secret(secret)
    webhook.save()
    return webhook
