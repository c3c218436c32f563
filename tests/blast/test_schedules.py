"""Beat jobs: one registry (instances.schedules), created after ``migrate``;
an interval or enabled flag edited in the admin is never overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from instances import schedules
from instances.schedules import JOBS, Job, interval_note, sync_schedules
from tests.fixtures.schedules import RECOVERY_JOB_NAMES

ROOT = Path(__file__).resolve().parents[2]


def _migrate() -> None:
    call_command("migrate", verbosity=0, interactive=False)


def _rows() -> dict[str, tuple[str, int, str, bool]]:
    return {
        task.name: (task.task, task.interval.every, task.interval.period, task.enabled)
        for task in PeriodicTask.objects.select_related("interval")
    }


def _expected(settings: Any) -> dict[str, tuple[str, int, str, bool]]:
    return {
        job.name: (job.task, max(1, round(getattr(settings, job.interval_setting))), "seconds", job.enabled)
        for job in JOBS
    }


def _every(every: int) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    return interval


def test_the_registry_names_each_job_and_each_task_once_with_a_defined_setting(settings: Any) -> None:
    assert len({job.name for job in JOBS}) == len(JOBS)
    assert len({job.task for job in JOBS}) == len(JOBS)
    for job in JOBS:
        assert job.interval_s() >= 1, job


def test_the_registry_names_only_tasks_the_celery_app_has() -> None:
    from blast.celery import app

    app.loader.import_default_modules()
    assert {job.task for job in JOBS} <= set(app.tasks)


def test_a_fresh_migrate_creates_every_job(tmp_path: Path) -> None:
    """A real ``manage.py migrate`` on an empty SQLite file."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    dump = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import json; from django_celery_beat.models import PeriodicTask as T; "
            "print(json.dumps({t.name: [t.task, t.interval.every, t.interval.period, t.enabled] "
            "for t in T.objects.select_related('interval')}))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert dump.returncode == 0, dump.stderr
    rows = json.loads(dump.stdout.strip().splitlines()[-1])
    from django.conf import settings

    assert {name: tuple(row) for name, row in rows.items()} == _expected(settings)


@pytest.mark.django_db
def test_the_test_database_has_every_job_as_the_registry_says(settings: Any) -> None:
    assert _rows() == _expected(settings)


@pytest.mark.django_db
def test_an_interval_edited_in_the_admin_survives_migrate(settings: Any) -> None:
    PeriodicTask.objects.filter(task="campaigns.tick").update(interval=_every(42))
    PeriodicTask.objects.filter(task="monitoring.prune").update(enabled=False)

    _migrate()

    rows = _rows()
    assert rows["Campaigns: start, pause, resume, complete"] == ("campaigns.tick", 42, "seconds", True)
    assert rows["Monitoring: prune old data"][3] is False
    assert len(rows) == len(JOBS)


@pytest.mark.django_db
def test_an_edited_interval_row_survives_migrate() -> None:
    """Editing the shared interval itself (every recovery job's) is kept too."""
    interval = PeriodicTask.objects.get(task="instances.advance_breakers").interval
    interval.every = 7
    interval.save()

    _migrate()

    everies = set(PeriodicTask.objects.filter(name__in=RECOVERY_JOB_NAMES).values_list("interval__every", flat=True))
    assert everies == {7}


@pytest.mark.django_db
def test_a_changed_setting_does_not_change_an_existing_job(settings: Any) -> None:
    settings.BLAST_CAMPAIGN_PERIOD_S = 9.0

    _migrate()

    assert PeriodicTask.objects.get(task="campaigns.tick").interval.every == 5


@pytest.mark.django_db
def test_a_job_added_to_the_registry_appears_after_migrate(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    added = Job("Test: a new job", "monitoring.heartbeat_twin", "BLAST_ALERT_PERIOD_S")
    monkeypatch.setattr(schedules, "JOBS", (*JOBS, added))
    monkeypatch.setattr(schedules, "JOBS_BY_NAME", {job.name: job for job in (*JOBS, added)})
    before = PeriodicTasks.last_change()

    _migrate()

    task = PeriodicTask.objects.get(name="Test: a new job")
    assert (task.task, task.interval.every, task.enabled) == ("monitoring.heartbeat_twin", 10, True)
    # A running beat rereads its schedule when this moves.
    changed = PeriodicTasks.last_change()
    assert changed is not None and (before is None or changed > before)


@pytest.mark.django_db
def test_a_deleted_job_comes_back_with_the_settings_interval(settings: Any) -> None:
    PeriodicTask.objects.filter(task="monitoring.record_snapshot").delete()
    settings.BLAST_SNAPSHOT_PERIOD_S = 30.0

    assert sync_schedules() == ["Monitoring: record health snapshot"]
    assert PeriodicTask.objects.get(task="monitoring.record_snapshot").interval.every == 30


@pytest.mark.django_db
def test_the_registry_owns_the_task_path() -> None:
    PeriodicTask.objects.filter(name="Dispatch due retries").update(task="instances.old_name", interval=_every(3))

    assert sync_schedules() == []

    task = PeriodicTask.objects.get(name="Dispatch due retries")
    assert (task.task, task.interval.every) == ("instances.dispatch_due_retries", 3)


@pytest.mark.django_db
def test_the_change_form_says_an_edit_is_kept() -> None:
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client = Client()
    client.force_login(root)
    job = next(job for job in JOBS if job.task == "campaigns.tick")
    task = PeriodicTask.objects.get(name=job.name)

    page = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]))

    assert page.status_code == 200
    assert interval_note(job) in page.content.decode()
    assert "BLAST_CAMPAIGN_PERIOD_S" in interval_note(job)


@pytest.mark.django_db
def test_the_change_form_of_an_operators_own_job_has_no_note() -> None:
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client = Client()
    client.force_login(root)
    own = PeriodicTask.objects.create(name="Own job", task="monitoring.prune", interval=_every(60))

    page = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[own.pk]))

    assert page.status_code == 200
    assert "survives restarts" not in page.content.decode()
