"""The Celery application: Redis broker, schedules from django-celery-beat."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blast.settings")

app = Celery("blast")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
