"""Celery tasks of the campaigns app: expansion, the beat jobs, webhook delivery.

This module is the Celery entry point and imports the modules whose work
the tasks run; none of them imports it back (they queue an expansion by name
through :mod:`campaigns.dispatch`).

Every task is idempotent and safe to run twice or concurrently; a lost task
message delays work, it never loses it, because the beat jobs find it again
(stalled expansions, overdue deliveries). Broker errors when queuing are
logged, not raised. A beat job's run logs at DEBUG when it found nothing to
do and says at INFO what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from campaigns import dispatch, due, expansion, jobs, webhooks

logger = logging.getLogger("blast.campaigns")


# A deadlock or a lost connection rolls the chunk back: try again soon
# rather than wait for the stall sweep.
@shared_task(
    name=dispatch.EXPAND_CAMPAIGN,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=5,
)
def expand_campaign(campaign_id: int) -> int:
    """Expand up to ``BLAST_CAMPAIGN_CHUNKS_PER_TASK`` chunks, then queue the
    rest as a new task (so that one long campaign does not hold a Celery
    worker for minutes). Returns the messages created."""
    result = expansion.expand(campaign_id)
    if result.more:
        dispatch.dispatch_expansion(campaign_id)
    return result.created


@shared_task(name="campaigns.dispatch_due_messages", ignore_result=True)
def dispatch_due_messages() -> int:
    """The sweep behind every new message's hint (campaigns.due)."""
    woken = due.dispatch_due_messages()
    if woken:
        logger.info("📤 woke %d connected instances with due messages", woken)
    else:
        logger.debug("no due message on a connected instance")
    return woken


@shared_task(name="campaigns.tick", ignore_result=True)
def tick() -> dict[str, int]:
    """The campaign beat job (campaigns.jobs)."""
    counts = jobs.tick()
    done = {step: count for step, count in counts.items() if count}
    if done:
        logger.info("📣 campaigns: %s", ", ".join(f"{step} {count}" for step, count in done.items()))
    else:
        logger.debug("campaigns: nothing to start, pause, resume, hold, complete or re-expand")
    return counts


@shared_task(name="campaigns.fan_out_webhooks", ignore_result=True)
def fan_out_webhooks() -> int:
    """Create the deliveries of new events, then queue them and any whose
    task was lost."""
    now = timezone.now()
    new = webhooks.fan_out(now)
    slack = max(30.0, 3 * float(settings.BLAST_WEBHOOK_PERIOD_S))
    lost = webhooks.overdue(now, slack_s=slack)
    dispatch_deliveries([*new, *lost])
    if new or lost:
        logger.info("🪝 webhook deliveries due: %d new, %d overdue", len(new), len(lost))
    else:
        logger.debug("no webhook delivery to queue")
    return len(new)


@shared_task(name="campaigns.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: int) -> str | None:
    """One attempt of one delivery; queues the next after a failure."""
    outcome = webhooks.attempt(delivery_id)
    if outcome is None:
        return None
    if outcome.retry_in is not None:
        dispatch_deliveries([delivery_id], countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="campaigns.prune_webhook_deliveries", ignore_result=True)
def prune_webhook_deliveries() -> int:
    deleted = webhooks.prune()
    if deleted:
        logger.info("🧹 pruned %d finished webhook deliveries", deleted)
    else:
        logger.debug("no finished webhook delivery past its retention")
    return deleted


def dispatch_deliveries(delivery_ids: Iterable[int], countdown: float | None = None) -> None:
    for delivery_id in dict.fromkeys(delivery_ids):
        try:
            deliver_webhook.apply_async((delivery_id,), countdown=countdown, queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except (KombuError, RedisError, OSError):
            logger.warning("⚠️ could not queue webhook delivery %s; the next fan-out retries it", delivery_id)
            return
