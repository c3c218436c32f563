"""Create the campaigns app's beat jobs (campaign tick, status webhooks,
pruning of old deliveries), so that beat runs them from the first start and
operators see (and can tune) them in the admin."""

from django.conf import settings
from django.db import migrations

# Frozen copy of campaigns.schedules.CAMPAIGN_JOBS as of this migration:
# (name, task, setting, default period in seconds).
JOBS = [
    ("Campaigns: start, pause, resume, complete", "campaigns.tick", "BLAST_CAMPAIGN_PERIOD_S", 5.0),
    ("Campaigns: status webhooks", "campaigns.fan_out_webhooks", "BLAST_WEBHOOK_PERIOD_S", 5.0),
    ("Campaigns: prune webhook deliveries", "campaigns.prune_webhook_deliveries", None, 3600.0),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, setting, default in JOBS:
        every = max(1, round(getattr(settings, setting, default) if setting else default))
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=[job[1] for job in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_contacts_campaigns_webhooks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
