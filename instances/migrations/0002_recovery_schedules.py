"""Create the recovery jobs' schedules, so that beat runs them from the first
start and operators see (and can tune) them in the admin."""

from django.conf import settings
from django.db import migrations

JOBS = [
    ("Dispatch due retries", "instances.dispatch_due_retries"),
    ("Advance breakers after cooldown", "instances.advance_breakers"),
    ("Recover sessions lost with their worker", "instances.recover_lost_sessions"),
    ("Clean stale connecting markers", "instances.clean_stale_connecting"),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = max(1, round(settings.BLAST_RECOVERY_PERIOD_S))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    for name, task in JOBS:
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=[task for _, task in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("instances", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
