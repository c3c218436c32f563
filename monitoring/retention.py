"""Retention (beat job ``monitoring.prune``): old snapshots, alerts and
connection events are deleted in small batches, so that no transaction
holds the database for long.

A connection event is deleted only once the alert evaluator has read it
(its id is at or below the evaluator's cursor and not one it still waits
for): its alerts are raised and it is counted in the tally that the
``blast_*_total`` counters start from, so pruning never lowers a counter.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from instances.models import ConnectionEvent
from monitoring.alerts import CURSOR_KEY
from monitoring.models import Alert, AlertState, HealthSnapshot
from monitoring.transitions import Cursor

logger = logging.getLogger("blast.monitoring")

BATCH = 5000


def _delete_in_batches(queryset: models.QuerySet[Any]) -> int:
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not ids:
            return deleted
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def event_cursor() -> Cursor:
    row = AlertState.objects.filter(key=CURSOR_KEY).values_list("data", flat=True).first()
    return Cursor.from_json(row)


def prune(now: dt.datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns how many of each."""
    now = now or timezone.now()
    cursor = event_cursor()
    events = ConnectionEvent.objects.filter(
        at__lt=now - dt.timedelta(days=settings.BLAST_EVENT_RETENTION_DAYS), id__lte=cursor.last_id
    )
    if cursor.gaps:
        events = events.exclude(id__in=cursor.unread_ids())
    counts = {
        "snapshots": _delete_in_batches(
            HealthSnapshot.objects.filter(at__lt=now - dt.timedelta(hours=settings.BLAST_SNAPSHOT_RETENTION_H))
        ),
        "alerts": _delete_in_batches(
            Alert.objects.filter(created_at__lt=now - dt.timedelta(days=settings.BLAST_ALERT_RETENTION_DAYS))
        ),
        "events": _delete_in_batches(events),
    }
    if any(counts.values()):
        logger.info("🧹 pruned %(snapshots)s snapshots, %(alerts)s alerts, %(events)s connection events", counts)
    return counts
