"""Schedule the sweep that wakes owners of instances with due messages."""

from django.conf import settings
from django.db import migrations

NAME = "Dispatch due messages"
TASK = "instances.dispatch_due_messages"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = max(1, round(settings.BLAST_RECOVERY_PERIOD_S))
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={"task": TASK, "interval": interval, "enabled": True})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [("instances", "0004_sending_policy")]

    operations = [migrations.RunPython(create, remove)]
