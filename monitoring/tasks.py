"""Celery tasks of the monitoring app: beat jobs and webhook delivery.

A beat job's run logs at DEBUG when it found nothing to do and says at INFO
what it did."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import shared_task
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from monitoring import alerts, delivery, health, retention, snapshots

logger = logging.getLogger("blast.monitoring")


@shared_task(name="monitoring.heartbeat", bind=True, ignore_result=True)
def heartbeat(self: Any) -> None:
    """Proves to /health that a Celery worker takes tasks off the queue."""
    hostname = self.request.hostname or "unknown"
    try:
        health.write_celery_heartbeat(hostname)
    except (RedisError, OSError):
        logger.warning("⚠️ could not write the Celery heartbeat: Redis does not answer")
        return
    # Routine: /health reads it; the log needs no line per run.
    logger.debug("Celery heartbeat written by %s", hostname)


@shared_task(name="monitoring.record_snapshot", ignore_result=True)
def record_snapshot() -> int:
    # Every run records, and snapshots.record says so (INFO).
    return snapshots.record()


@shared_task(name="monitoring.prune", ignore_result=True)
def prune() -> dict[str, int]:
    # What was deleted is logged (INFO) by retention.prune.
    counts = retention.prune()
    if not any(counts.values()):
        logger.debug("no snapshot, alert or connection event past its retention")
    return counts


@shared_task(name="monitoring.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> int:
    """Raise the alerts of every transition since the last run, then hint
    the new deliveries and any whose hint was lost."""
    from django.utils import timezone

    # Each alert raised is logged (INFO) by alerts.evaluate.
    new = alerts.evaluate()
    lost = delivery.overdue(timezone.now(), slack_s=max(30.0, 3 * settings.BLAST_ALERT_PERIOD_S))
    dispatch([*new, *lost])
    if new or lost:
        logger.info("🔔 alert deliveries due: %d new, %d overdue", len(new), len(lost))
    else:
        logger.debug("no alert raised, no alert delivery overdue")
    return len(new)


@shared_task(name="monitoring.deliver_alert", ignore_result=True)
def deliver_alert(delivery_id: int) -> str | None:
    """One attempt of one delivery; schedules the next after a failure."""
    outcome = delivery.attempt(delivery_id)
    if outcome is None:
        return None
    if outcome.retry_in is not None:
        dispatch([delivery_id], countdown=outcome.retry_in)
    return outcome.status


def dispatch(delivery_ids: Iterable[int], countdown: float | None = None) -> None:
    """Hint Celery to attempt these deliveries (now, or after ``countdown``).

    A broker error is logged, not raised: the evaluator's sweep finds the
    deliveries again.
    """
    for delivery_id in dict.fromkeys(delivery_ids):
        try:
            deliver_alert.apply_async((delivery_id,), countdown=countdown, queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except (KombuError, RedisError, OSError):
            logger.warning("⚠️ could not queue delivery %s; the next evaluation retries it", delivery_id)
            return
