"""Every periodic job beat runs, and the sync that schedules them.

The registry lives in the lowest app so that every app above it (monitoring's
health checks, the engine, the tests) can read it without an upward import;
it names each task by its registered name, a string, so it imports no app's
tasks either.

:func:`sync_schedules` runs after every ``migrate`` (and after the flush of a
transactional test, which Django follows with ``post_migrate`` too). The rule
it keeps: **the registry owns a job's existence and task path; the database
owns its interval and enabled flag.** A missing job is created with the
interval its setting holds at that moment and the registry's enabled flag; an
existing job (found by name) keeps whatever interval and enabled flag it has,
so an edit made in the admin survives restarts, deploys and later migrations.
Changing an interval setting afterwards therefore changes nothing on a
database that already has the job: edit the job in the admin (*Periodic
tasks*), which says so on its change form.

Schedules are not declared in ``CELERY_BEAT_SCHEDULE``: django-celery-beat's
DatabaseScheduler writes those over the database rows on every beat start,
which would undo an operator's edit at each restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

logger = logging.getLogger("blast.schedules")


@dataclass(frozen=True)
class Job:
    """One periodic job: ``name`` is its unique name in the admin, ``task``
    the Celery task's registered name, ``interval_setting`` the setting whose
    value (seconds, rounded to a whole second, at least one) becomes the
    interval when the job is created, ``enabled`` its state when created."""

    name: str
    task: str
    interval_setting: str
    enabled: bool = True

    def interval_s(self) -> int:
        """The interval a new schedule gets, from the setting as it is now."""
        return max(1, round(float(getattr(settings, self.interval_setting))))


# The connection engine's recovery jobs (instances.recovery, and the due
# messages sweep of campaigns.due): /health's beat check watches these.
RECOVERY_JOBS: tuple[Job, ...] = (
    Job("Dispatch due retries", "instances.dispatch_due_retries", "BLAST_RECOVERY_PERIOD_S"),
    Job("Advance breakers after cooldown", "instances.advance_breakers", "BLAST_RECOVERY_PERIOD_S"),
    Job("Recover sessions lost with their worker", "instances.recover_lost_sessions", "BLAST_RECOVERY_PERIOD_S"),
    Job("Clean stale connecting markers", "instances.clean_stale_connecting", "BLAST_RECOVERY_PERIOD_S"),
    Job("Dispatch due messages", "campaigns.dispatch_due_messages", "BLAST_RECOVERY_PERIOD_S"),
)
CAMPAIGN_JOBS: tuple[Job, ...] = (
    Job("Campaigns: start, pause, resume, complete", "campaigns.tick", "BLAST_CAMPAIGN_PERIOD_S"),
    Job("Campaigns: status webhooks", "campaigns.fan_out_webhooks", "BLAST_WEBHOOK_PERIOD_S"),
    Job("Campaigns: prune webhook deliveries", "campaigns.prune_webhook_deliveries", "BLAST_WEBHOOK_PRUNE_PERIOD_S"),
)
MONITORING_JOBS: tuple[Job, ...] = (
    Job("Monitoring: Celery heartbeat", "monitoring.heartbeat", "BLAST_CELERY_HEARTBEAT_PERIOD_S"),
    Job("Monitoring: record health snapshot", "monitoring.record_snapshot", "BLAST_SNAPSHOT_PERIOD_S"),
    Job("Monitoring: evaluate alerts", "monitoring.evaluate_alerts", "BLAST_ALERT_PERIOD_S"),
    Job("Monitoring: prune old data", "monitoring.prune", "BLAST_PRUNE_PERIOD_S"),
)
JOBS: tuple[Job, ...] = RECOVERY_JOBS + CAMPAIGN_JOBS + MONITORING_JOBS
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}


def sync_schedules(apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the registry's jobs that the database lacks and put the
    registry's task path on those it has; return the names created.

    Never changes an existing job's interval or enabled flag (see the module's
    docstring). Does nothing when django-celery-beat's models are not in
    ``apps`` (a ``migrate`` that stopped before its migrations).
    """
    try:
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    except LookupError:
        return []
    tasks = PeriodicTask.objects.using(using)
    existing = dict(tasks.filter(name__in=list(JOBS_BY_NAME)).values_list("name", "task"))
    created: list[str] = []
    changed = False
    for job in JOBS:
        if job.name in existing:
            if existing[job.name] != job.task:
                tasks.filter(name=job.name).update(task=job.task)
                changed = True
            continue
        every = job.interval_s()
        # IntervalSchedule has no unique constraint: reuse the first match.
        interval = IntervalSchedule.objects.using(using).filter(every=every, period="seconds").order_by("pk").first()
        if interval is None:
            interval = IntervalSchedule.objects.using(using).create(every=every, period="seconds")
        tasks.create(name=job.name, task=job.task, interval=interval, enabled=job.enabled)
        created.append(job.name)
        changed = True
    if changed:
        # Historical models send no signals: tell a running beat to reread
        # its schedule, as django-celery-beat's own save signal would.
        PeriodicTasks.objects.using(using).update_or_create(ident=1, defaults={"last_update": timezone.now()})
    if created:
        logger.info("beat jobs created: %s", ", ".join(created))
    return created


def sync_after_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, apps: Apps = global_apps, **_: Any) -> None:
    """``post_migrate`` receiver (connected by ``InstancesConfig.ready``)."""
    sync_schedules(apps, using)


def interval_note(job: Job) -> str:
    """What the admin's change form says under a registry job's interval."""
    return (
        f"Set from {job.interval_setting} when the platform created this job. The platform never changes "
        "the interval or the enabled flag of an existing job, so an edit made here survives restarts and "
        f"migrations; changing {job.interval_setting} later does not change this job."
    )
