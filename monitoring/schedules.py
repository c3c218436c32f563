"""The monitoring app's beat jobs. Their schedules are created by migration
0002 (from the periods in settings at that time) and can be tuned in the
admin; :func:`install` re-creates them, e.g. after a test flushed them."""

from __future__ import annotations

from django.conf import settings

# (name shown in the admin, task name, setting holding the period in seconds)
MONITORING_JOBS = [
    ("Monitoring: Celery heartbeat", "monitoring.heartbeat", "BLAST_CELERY_HEARTBEAT_PERIOD_S"),
    ("Monitoring: record health snapshot", "monitoring.record_snapshot", "BLAST_SNAPSHOT_PERIOD_S"),
    ("Monitoring: evaluate alerts", "monitoring.evaluate_alerts", "BLAST_ALERT_PERIOD_S"),
    ("Monitoring: prune old data", "monitoring.prune", "BLAST_PRUNE_PERIOD_S"),
]


def install(**periods_s: float) -> None:
    """Create or update the jobs' schedules; ``periods_s`` maps a task name
    to a period overriding its setting (whole seconds, at least one)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, task, setting in MONITORING_JOBS:
        every = max(1, round(periods_s.get(task, getattr(settings, setting))))
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})
