"""The campaigns app's beat jobs. Migration 0004 creates their schedules
(from the periods in settings at that time); they can be tuned in the admin,
and :func:`install` re-creates them (e.g. after a test flushed them)."""

from __future__ import annotations

from campaigns import conf

# (name shown in the admin, task name, setting holding the period in seconds)
CAMPAIGN_JOBS = [
    ("Campaigns: start, pause, resume, complete", "campaigns.tick", "BLAST_CAMPAIGN_PERIOD_S"),
    ("Campaigns: status webhooks", "campaigns.fan_out_webhooks", "BLAST_WEBHOOK_PERIOD_S"),
    ("Campaigns: prune webhook deliveries", "campaigns.prune_webhook_deliveries", None),
]
PRUNE_PERIOD_S = 3600


def install(**periods_s: float) -> None:
    """Create or update the jobs' schedules; ``periods_s`` maps a task name
    to a period overriding its setting (whole seconds, at least one)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, task, setting in CAMPAIGN_JOBS:
        default = float(conf.get(setting)) if setting else PRUNE_PERIOD_S
        every = max(1, round(periods_s.get(task, default)))
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})
