"""Quiet logs: a beat job's run logs at DEBUG unless it did something.

Celery's bookkeeping lines for each run of a beat job (beat's "Sending due
task", the worker's "received" and "succeeded") are lowered to DEBUG by
``blast.logs.PeriodicBookkeepingFilter``, which ``LOGGING`` attaches to the
Celery loggers; one-off tasks keep theirs at INFO and a failing task is still
an ERROR. Each job says at INFO what it did, and at DEBUG that it found
nothing to do.

The first test runs the Procfile's ``celery`` and ``beat`` entries as real
processes, every job every second, until every job ran three times; the
others read real records of Celery's tracer and the jobs' own lines in
process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shlex
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from instances.models import DesiredState, Gateway, Instance, Status, Tenant
from instances.schedules import JOBS
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.schedules import install_schedules

ROOT = Path(__file__).resolve().parents[2]

# One line of the platform's log format (LOGGING's "plain" formatter).
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) (.*)$")
TASK_ID = re.compile(r"\[[0-9a-f-]{36}\]")

# INFO lines a worker or beat writes once, at start or stop, whatever the
# jobs do: the broker connection, the search for (and greetings of) other
# workers on the same broker, "ready", beat's start and stop.
ONCE = (
    ("celery.worker.consumer.connection", "Connected to "),
    ("celery.worker.consumer.mingle", "mingle: "),
    ("celery.worker.control", "sync with "),
    ("celery.apps.worker", " ready."),
    ("celery.beat", "beat: Starting..."),
    ("celery.beat", "beat: Shutting down..."),
)
# The snapshot job records rows on every run, and says so at INFO
# (monitoring.snapshots): that line is what it did, not bookkeeping.
SNAPSHOT = ("blast.monitoring", "📸 snapshot: ")
# Other INFO lines allowed in the whole run, each at most once: state changes
# the first runs find on an empty platform (the alert evaluator's start, the
# "no live connection worker" alert firing).
ONE_TIME_ALLOWANCE = 5

RUNS = 3


def _procfile(entry: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == entry:
            return command.strip()
    raise AssertionError(f"no {entry!r} entry in the Procfile")


def _start_entry(platform: Platform, entry: str, *extra: str) -> Any:
    """The Procfile entry as ``make run`` starts it (``/bin/sh -c``), with the
    venv's ``celery`` first on the PATH and ``extra`` arguments appended."""
    command = f"exec {_procfile(entry)} {shlex.join(extra)}".strip()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return platform.start(entry, ["/bin/sh", "-c", command], PATH=path)


def _lines(text: str) -> list[tuple[str, str, str]]:
    return [match.groups() for match in map(LINE.match, text.splitlines()) if match]


def test_beat_jobs_with_nothing_to_do_write_no_info_line_per_run(platform: Platform) -> None:
    from blast.celery import app

    install_schedules(**{job.task: 1 for job in JOBS})
    node = f"quiet-{uuid.uuid4().hex[:8]}@localhost"
    # A later --hostname wins: a name of its own, so that the stats asked
    # below are this worker's alone.
    worker = _start_entry(platform, "celery", "--hostname", node)
    beat = _start_entry(platform, "beat")
    wait_until(lambda: " ready." in worker.log() or not worker.alive(), timeout=60, message="celery worker ready")
    wait_until(lambda: "beat: Starting" in beat.log() or not beat.alive(), timeout=60, message="beat started")
    assert worker.alive() and beat.alive(), platform.logs()

    queue = platform.env["CELERY_TASK_DEFAULT_QUEUE"]
    # A one-off task (a delivery that does not exist: nothing to send) and a
    # beat job's task that fails (called with an argument it does not take).
    app.send_task("campaigns.deliver_webhook", args=[0], queue=queue)
    app.send_task("instances.dispatch_due_retries", args=["unexpected"], queue=queue)

    def runs() -> dict[str, int]:
        replies = app.control.inspect(destination=[node], timeout=1.0).stats() or {}
        return dict(replies.get(node, {}).get("total", {}))

    # The worker counts each task it starts; each job's first runs, started
    # seconds before its third, are over (each takes milliseconds).
    wait_until(
        lambda: all(runs().get(job.task, 0) >= RUNS for job in JOBS) or not worker.alive(),
        timeout=90,
        interval=0.5,
        message=f"every beat job run {RUNS} times",
    )

    def logged(level: str, task: str, part: str) -> bool:
        lines = _lines(worker.log())
        return any(lvl == level and m.startswith(f"Task {task}[") and part in m for lvl, _, m in lines)

    wait_until(
        lambda: logged("INFO", "campaigns.deliver_webhook", " succeeded in ")
        and logged("ERROR", "instances.dispatch_due_retries", " raised unexpected: TypeError"),
        timeout=30,
        message="the one-off task's success and the failing task's error logged",
    )
    assert worker.alive() and beat.alive(), platform.logs()
    worker.terminate()
    beat.terminate()

    lines = _lines(worker.log()) + _lines(beat.log())
    assert lines, platform.logs()  # the platform's format: Django's LOGGING applies in both processes
    info = [(logger, message) for level, logger, message in lines if level == "INFO"]

    # The one-off task keeps its lines at INFO (its success, and the failure
    # of a beat job's task as an ERROR, were waited for above).
    assert logged("INFO", "campaigns.deliver_webhook", " received"), platform.logs()

    # No INFO line about a beat job's run: not beat's, not the worker's.
    names = [job.task for job in JOBS] + [job.name for job in JOBS]
    about_jobs = [(logger, m) for logger, m in info if any(name in m for name in names)]
    assert about_jobs == [], about_jobs[:10]

    # Nothing else at INFO per run: once-only lines, the snapshots, and a few
    # one-time state changes, none of them twice.
    rest = [
        (logger, TASK_ID.sub("", m))
        for logger, m in info
        if not any(logger == name and part in m for name, part in (*ONCE, SNAPSHOT))
        and not m.startswith("Task campaigns.deliver_webhook[")
    ]
    repeated = {line: count for line, count in Counter(rest).items() if count > 1}
    assert repeated == {}, repeated
    assert len(rest) <= ONE_TIME_ALLOWANCE, rest


# -- in process: real records of Celery's tracer -------------------------------------------


@pytest.fixture
def isolated(settings: Any) -> Iterator[None]:
    """Redis keys and the hint channel of this test alone."""
    import redis

    tag = uuid.uuid4().hex[:8]
    settings.BLAST_REDIS_PREFIX = f"blast-test-{tag}"
    settings.BLAST_WORKER_CHANNEL = f"blast-test-{tag}"
    yield
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.BLAST_REDIS_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


def _celery_records(caplog: pytest.LogCaptureFixture, task: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "celery.app.trace" and r.getMessage().startswith(f"Task {task}[")]


@pytest.mark.django_db
def test_only_a_beat_jobs_succeeded_line_is_lowered_to_debug(
    caplog: pytest.LogCaptureFixture, monkeypatch: Any, isolated: None
) -> None:
    """At INFO a beat job's "succeeded" is gone while a one-off task's stays
    and a failing beat job is an ERROR; at DEBUG the job's line is back, as
    DEBUG."""
    from campaigns import tasks as campaign_tasks
    from instances import recovery
    from instances import tasks as instance_tasks

    caplog.set_level(logging.INFO)
    instance_tasks.advance_breakers.apply()
    campaign_tasks.deliver_webhook.apply((0,))
    assert _celery_records(caplog, "instances.advance_breakers") == []
    [one_off] = _celery_records(caplog, "campaigns.deliver_webhook")
    assert " succeeded in " in one_off.getMessage() and one_off.levelno == logging.INFO

    def fail() -> int:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(recovery, "dispatch_due_retries", fail)
        instance_tasks.dispatch_due_retries.apply()
    [failure] = _celery_records(caplog, "instances.dispatch_due_retries")
    assert failure.levelno == logging.ERROR
    assert "raised unexpected: RuntimeError('the database went away')" in failure.getMessage()

    caplog.clear()
    caplog.set_level(logging.DEBUG)
    instance_tasks.advance_breakers.apply()
    [record] = _celery_records(caplog, "instances.advance_breakers")
    assert " succeeded in " in record.getMessage()
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")


# -- in process: the jobs' own lines -------------------------------------------------------


def _platform_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("blast.")]


def _beat_job_calls() -> dict[str, Any]:
    from campaigns import tasks as campaign_tasks
    from instances import tasks as instance_tasks
    from monitoring import tasks as monitoring_tasks

    found = {}
    for module in (instance_tasks, campaign_tasks, monitoring_tasks):
        for value in vars(module).values():
            if getattr(value, "name", None) in {job.task for job in JOBS}:
                found[value.name] = value
    assert set(found) == {job.task for job in JOBS}
    return found


@pytest.mark.django_db
def test_beat_jobs_with_nothing_to_do_log_only_at_debug(caplog: pytest.LogCaptureFixture, isolated: None) -> None:
    calls = _beat_job_calls()
    # The first runs on a new database find state to record (the alert
    # evaluator's start, alerts of an empty platform): once, not per run.
    for call in calls.values():
        call()
    for _ in range(2):
        for task, call in calls.items():
            if task == "monitoring.record_snapshot":
                continue  # records rows on every run, and says so at INFO
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            call()
            records = _platform_records(caplog)
            assert [r.getMessage() for r in records if r.levelno >= logging.INFO] == [], task
            assert [r for r in records if r.levelno == logging.DEBUG], f"{task} logged nothing at DEBUG"


def _did(caplog: pytest.LogCaptureFixture) -> str:
    """The one line at INFO or above the run logged."""
    lines = [r.getMessage() for r in _platform_records(caplog) if r.levelno >= logging.INFO]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.django_db
def test_dispatching_due_retries_says_how_many(caplog: pytest.LogCaptureFixture, isolated: None) -> None:
    from instances import tasks

    tenant = Tenant.objects.create(slug="quiet", name="Quiet")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    past = timezone.now() - dt.timedelta(seconds=5)
    for n in range(3):
        instance = Instance.objects.create(tenant=tenant, gateway=gateway, name=f"due-{n}")
        Instance.objects.filter(pk=instance.pk).update(
            desired_state=DesiredState.RUNNING, status=Status.DISCONNECTED, next_retry_at=past
        )
    caplog.set_level(logging.INFO)
    assert tasks.dispatch_due_retries() == 3
    assert "dispatched 3 instances" in _did(caplog)


@pytest.mark.django_db
def test_recovering_lost_sessions_is_one_warning_then_debug(caplog: pytest.LogCaptureFixture, isolated: None) -> None:
    from instances import tasks

    tenant = Tenant.objects.create(slug="quiet", name="Quiet")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    past = timezone.now() - dt.timedelta(seconds=5)
    for n in range(2):
        instance = Instance.objects.create(tenant=tenant, gateway=gateway, name=f"lost-{n}")
        # Connected by a worker whose lease is gone.
        Instance.objects.filter(pk=instance.pk).update(
            desired_state=DesiredState.RUNNING, status=Status.CONNECTED, owner="gone", status_changed_at=past
        )
    caplog.set_level(logging.DEBUG)
    assert tasks.recover_lost_sessions() == 2
    # recovery's own warning says what was done; the task adds no second line.
    assert "2 sessions lost with their worker" in _did(caplog)
    caplog.clear()
    assert tasks.recover_lost_sessions() == 0
    assert [r.getMessage() for r in _platform_records(caplog)] == ["no session lost with its worker"]


@pytest.mark.parametrize(
    ("task", "work", "said"),
    [
        (
            "campaigns.dispatch_due_messages",
            {("campaigns.due", "dispatch_due_messages"): 12},
            "woke 12 connected instances with due messages",
        ),
        (
            "campaigns.tick",
            {
                ("campaigns.jobs", "tick"): {
                    "started": 1,
                    "paused": 0,
                    "resumed": 0,
                    "windows": 0,
                    "completed": 2,
                    "expansions": 0,
                }
            },
            "campaigns: started 1, completed 2",
        ),
        (
            "campaigns.fan_out_webhooks",
            {
                ("campaigns.webhooks", "fan_out"): [1, 2],
                ("campaigns.webhooks", "overdue"): [3],
                ("campaigns.tasks", "dispatch_deliveries"): None,
            },
            "webhook deliveries due: 2 new, 1 overdue",
        ),
        (
            "campaigns.prune_webhook_deliveries",
            {("campaigns.webhooks", "prune"): 4},
            "pruned 4 finished webhook deliveries",
        ),
        (
            "monitoring.evaluate_alerts",
            {
                ("monitoring.alerts", "evaluate"): [7],
                ("monitoring.delivery", "overdue"): [8, 9],
                ("monitoring.tasks", "dispatch"): None,
            },
            "alert deliveries due: 1 new, 2 overdue",
        ),
    ],
)
def test_a_beat_job_that_did_something_says_what_in_one_info_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: Any, task: str, work: dict[tuple[str, str], Any], said: str
) -> None:
    """The work each job delegates returns what it did; the job's line says it."""
    import importlib

    for (module, name), result in work.items():
        monkeypatch.setattr(importlib.import_module(module), name, lambda *a, result=result, **k: result)
    caplog.set_level(logging.INFO)
    _beat_job_calls()[task]()
    assert said in _did(caplog)
