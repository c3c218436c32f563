"""The platform's health: checks of every dependency plus the health score.

:func:`evaluate` runs every check and returns a :class:`HealthReport` that
``/health`` serves as ``application/health+json`` (the IETF draft "Health
Check Response Format for HTTP APIs"). Each check costs one cheap query or
one Redis round trip; the instance counts are one aggregate query
(:mod:`monitoring.counts`). No check loops over instances.

Status, from the checks (:func:`overall`):

- ``fail`` (HTTP 503): the database or Redis does not answer, or no
  connection worker is live (no heartbeat fresher than
  ``BLAST_WORKER_STALE_FACTOR`` heartbeat intervals, not stopped).
- ``warn`` (HTTP 200): the score is below ``BLAST_HEALTH_PASS_SCORE`` (80),
  beat has not run the recovery jobs for ``BLAST_BEAT_STALE_S``, or no Celery
  worker has run the heartbeat task for ``BLAST_CELERY_STALE_S``. Sessions
  keep running in these cases; recovery, alerts or background jobs lag.
- ``pass`` (HTTP 200): everything else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone
from redis.exceptions import RedisError

from instances.models import DesiredState, Gateway, GatewayState, WorkerHeartbeat
from instances.schedules import RECOVERY_JOBS
from monitoring.counts import InstanceCounts, count_instances

logger = logging.getLogger("blast.monitoring")

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
CONTENT_TYPE = "application/health+json"


@dataclass(frozen=True)
class Check:
    """One check: ``name`` is ``component:measurement`` as in the draft."""

    name: str
    component_type: str
    status: str
    observed_value: Any = None
    observed_unit: str = ""
    output: str = ""
    time: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"componentType": self.component_type, "status": self.status}
        if self.observed_value is not None:
            body["observedValue"] = self.observed_value
        if self.observed_unit:
            body["observedUnit"] = self.observed_unit
        if self.time is not None:
            body["time"] = self.time.isoformat()
        if self.output:
            body["output"] = self.output
        body.update(self.extra)
        return body


@dataclass(frozen=True)
class HealthReport:
    status: str
    checks: list[Check]
    time: dt.datetime
    counts: InstanceCounts | None = None
    score: int | None = None

    @property
    def http_status(self) -> int:
        """200 for pass and warn, 503 for fail."""
        return 503 if self.status == FAIL else 200

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def output(self) -> str:
        """Why the status is not pass: the outputs of the checks that are not."""
        return "; ".join(f"{c.name}: {c.output or c.status}" for c in self.checks if c.status != PASS)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "version": "1",
            "serviceId": "blast",
            "description": "Blast messaging platform",
            "time": self.time.isoformat(),
            "score": self.score,
            "passScore": settings.BLAST_HEALTH_PASS_SCORE,
        }
        if self.status != PASS:
            body["output"] = self.output
        if self.counts is not None:
            body["instances"] = self.counts.as_dict()
        checks: dict[str, list[dict[str, Any]]] = {}
        for check in self.checks:
            checks.setdefault(check.name, []).append(check.as_json())
        body["checks"] = checks
        return body

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":")).encode()


def overall(statuses: Iterable[str]) -> str:
    """The worst of ``statuses`` (pass < warn < fail); pass when empty."""
    return max(statuses, key=_RANK.__getitem__, default=PASS)


def score_status(score: int, pass_score: int) -> str:
    """``pass`` from ``pass_score`` up, ``warn`` below: the score alone never fails."""
    return PASS if score >= pass_score else WARN


# -- Redis ----------------------------------------------------------------------


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)


def redis_client() -> redis.Redis:
    """A client on ``settings.REDIS_URL`` with one-second timeouts (pooled)."""
    return _client(settings.REDIS_URL)


def celery_heartbeat_key() -> str:
    return f"{settings.BLAST_REDIS_PREFIX}:monitoring:celery-heartbeat"


def write_celery_heartbeat(hostname: str, now: dt.datetime | None = None) -> None:
    """Note that a Celery worker (``hostname``) just ran a task off the queue."""
    now = now or timezone.now()
    ttl = max(60, int(settings.BLAST_CELERY_STALE_S * 4))
    value = json.dumps({"at": now.timestamp(), "hostname": hostname})
    redis_client().set(celery_heartbeat_key(), value, ex=ttl)


# -- the checks -------------------------------------------------------------------


def check_database() -> Check:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return Check("database:responseTime", "datastore", FAIL, output=f"no answer: {type(exc).__name__}")
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return Check("database:responseTime", "datastore", PASS, elapsed, "ms")


def check_redis() -> Check:
    started = time.perf_counter()
    try:
        redis_client().ping()
    except (RedisError, OSError) as exc:
        return Check("redis:responseTime", "datastore", FAIL, output=f"no answer: {type(exc).__name__}")
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return Check("redis:responseTime", "datastore", PASS, elapsed, "ms")


def worker_stale_after() -> dt.timedelta:
    return dt.timedelta(seconds=settings.BLAST_WORKER_STALE_FACTOR * settings.BLAST_HEARTBEAT_INTERVAL_S)


def live_workers(now: dt.datetime) -> dict[str, Any]:
    """Live connection workers (fresh heartbeat, not stopped), in one query."""
    return WorkerHeartbeat.objects.filter(stopped_at__isnull=True, last_seen__gte=now - worker_stale_after()).aggregate(
        live=Count("id"),
        sessions=Sum("sessions_held"),
        total_capacity=Sum("capacity"),
        unsized=Count("id", filter=Q(capacity=0)),
        oldest=Min("last_seen"),
        progress=Max("last_progress_at"),
    )


def check_workers(now: dt.datetime, running: int = 0) -> Check:
    row = live_workers(now)
    live, sessions = row["live"], row["sessions"] or 0
    extra: dict[str, Any] = {"sessionsHeld": sessions}
    if row["oldest"] is not None:
        extra["oldestHeartbeatAgeS"] = round((now - row["oldest"]).total_seconds(), 1)
    if row["progress"] is not None:
        extra["lastProgressAgeS"] = round((now - row["progress"]).total_seconds(), 1)
    if live == 0:
        window = worker_stale_after().total_seconds()
        return Check(
            "connection-workers:live",
            "component",
            FAIL,
            0,
            "workers",
            output=f"no connection worker heartbeat in the last {window:g}s",
            extra=extra,
        )
    capacity = row["total_capacity"] or 0
    extra["capacity"] = capacity
    # A worker that does not say its capacity (an older one) is not counted short.
    if not row["unsized"] and capacity < running:
        return Check(
            "connection-workers:live",
            "component",
            WARN,
            live,
            "workers",
            output=f"live workers hold at most {capacity} sessions, {running} instances should run",
            extra=extra,
        )
    return Check("connection-workers:live", "component", PASS, live, "workers", extra=extra)


def beat_last_run() -> tuple[int, dt.datetime | None]:
    """How many recovery jobs are enabled, and the latest run of any of them."""
    from django_celery_beat.models import PeriodicTask

    row = PeriodicTask.objects.filter(task__in=[job.task for job in RECOVERY_JOBS], enabled=True).aggregate(
        jobs=Count("id"), last=Max("last_run_at")
    )
    return row["jobs"], row["last"]


def check_beat(now: dt.datetime) -> Check:
    jobs, last = beat_last_run()
    name = "celery-beat:lastRun"
    if jobs == 0:
        return Check(name, "component", WARN, output="no recovery job is scheduled and enabled")
    if last is None:
        return Check(name, "component", WARN, output="the recovery jobs have never run")
    age = round((now - last).total_seconds(), 1)
    if age > settings.BLAST_BEAT_STALE_S:
        return Check(name, "component", WARN, age, "s", output=f"recovery jobs last ran {age:g}s ago", time=last)
    return Check(name, "component", PASS, age, "s", time=last)


def celery_heartbeat() -> dict[str, Any] | None:
    """The last heartbeat task's record, or None (raises RedisError)."""
    raw = redis_client().get(celery_heartbeat_key())
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_celery(now: dt.datetime) -> Check:
    name = "celery-worker:lastTask"
    try:
        beat = celery_heartbeat()
    except (RedisError, OSError):
        return Check(name, "component", WARN, output="unknown: Redis does not answer")
    if beat is None:
        return Check(name, "component", WARN, output="no Celery worker has run the heartbeat task yet")
    at = dt.datetime.fromtimestamp(float(beat.get("at", 0)), tz=dt.UTC)
    age = round(max(0.0, (now - at).total_seconds()), 1)
    extra = {"hostname": str(beat.get("hostname", ""))}
    if age > settings.BLAST_CELERY_STALE_S:
        return Check(name, "component", WARN, age, "s", output=f"no Celery task ran for {age:g}s", time=at, extra=extra)
    return Check(name, "component", PASS, age, "s", time=at, extra=extra)


def check_score(counts: InstanceCounts) -> Check:
    value = counts.score
    status = score_status(value, settings.BLAST_HEALTH_PASS_SCORE)
    output = "" if status == PASS else f"score {value} below {settings.BLAST_HEALTH_PASS_SCORE}"
    return Check(
        "instances:score",
        "system",
        status,
        value,
        "percent",
        output=output,
        extra={"connected": counts.connected, "expected": counts.expected, "openBreakers": counts.open_breakers},
    )


def check_gateways(now: dt.datetime) -> list[Check]:
    """One check per enabled gateway: a down gateway warns; when every gateway
    that has running instances is down, nothing can connect: fail."""
    rows = list(
        Gateway.objects.filter(enabled=True)
        .annotate(running=Count("instances", filter=Q(instances__desired_state=DesiredState.RUNNING)))
        .order_by("name")
        .values_list("name", "state", "down_since", "down_reason", "next_probe_at", "running")
    )
    with_running = [row for row in rows if row[5]]
    all_down = bool(with_running) and all(row[1] == GatewayState.DOWN for row in with_running)
    checks: list[Check] = []
    for name, state, since, reason, next_probe, running in rows:
        extra: dict[str, Any] = {"state": state, "runningInstances": running}
        if state != GatewayState.DOWN:
            checks.append(Check(f"gateway:{name}", "component", PASS, extra=extra))
            continue
        down_s = round((now - since).total_seconds(), 1) if since is not None else None
        extra.update(downSince=since.isoformat() if since else None, reason=reason)
        if next_probe is not None:
            extra["nextProbeAt"] = next_probe.isoformat()
        status = FAIL if all_down and running else WARN
        output = f"down for {down_s:g}s ({reason or 'no answer'}); probing" if down_s is not None else "down"
        checks.append(Check(f"gateway:{name}", "component", status, down_s, "s", output=output, extra=extra))
    return checks


def evaluate(now: dt.datetime | None = None) -> HealthReport:
    """Run every check; never raises for a dependency that is down."""
    now = now or timezone.now()
    checks = [check_database(), check_redis()]
    counts: InstanceCounts | None = None
    if checks[0].status == PASS:
        try:
            counts = count_instances()
            checks += [check_workers(now, counts.running), check_beat(now), *check_gateways(now)]
        except DatabaseError as exc:
            checks[0] = Check("database:responseTime", "datastore", FAIL, output=f"query failed: {exc}")
    checks.append(check_celery(now))
    if counts is not None:
        checks.append(check_score(counts))
    return HealthReport(
        status=overall(c.status for c in checks),
        checks=checks,
        time=now,
        counts=counts,
        score=counts.score if counts is not None else None,
    )


def readiness(now: dt.datetime | None = None) -> HealthReport:
    """The dependencies this process needs to serve requests: database, Redis."""
    checks = [check_database(), check_redis()]
    return HealthReport(status=overall(c.status for c in checks), checks=checks, time=now or timezone.now())
