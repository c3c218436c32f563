"""Create the monitoring app's beat jobs (Celery heartbeat, health snapshot,
alert evaluation, pruning), so that beat runs them from the first start and
operators see (and can tune) them in the admin."""

from django.conf import settings
from django.db import migrations

# Frozen copy of monitoring.schedules.MONITORING_JOBS as of this migration.
JOBS = [
    ("Monitoring: Celery heartbeat", "monitoring.heartbeat", "BLAST_CELERY_HEARTBEAT_PERIOD_S", 10.0),
    ("Monitoring: record health snapshot", "monitoring.record_snapshot", "BLAST_SNAPSHOT_PERIOD_S", 60.0),
    ("Monitoring: evaluate alerts", "monitoring.evaluate_alerts", "BLAST_ALERT_PERIOD_S", 10.0),
    ("Monitoring: prune old data", "monitoring.prune", "BLAST_PRUNE_PERIOD_S", 3600.0),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, setting, default in JOBS:
        every = max(1, round(getattr(settings, setting, default)))
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=[job[1] for job in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
