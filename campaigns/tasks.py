"""Celery tasks of the campaigns app: expansion, the beat jobs, webhook delivery.

This module is the Celery entry point and imports the modules whose work
the tasks run; none of them imports it back (they queue an expansion by name
through :mod:`campaigns.dispatch`).

Every task is idempotent and safe to run twice or concurrently; a lost task
message delays work, it never loses it, because the beat jobs find it again
(stalled expansions, overdue deliveries). Broker errors when queuing are
logged, not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from campaigns import dispatch, due, expansion, jobs, webhooks

logger = logging.getLogger("blast.campaigns")


@shared_task(name=dispatch.EXPAND_CAMPAIGN, ignore_result=True)
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
    return due.dispatch_due_messages()


@shared_task(name="campaigns.tick", ignore_result=True)
def tick() -> dict[str, int]:
    """The campaign beat job (campaigns.jobs)."""
    return jobs.tick()


@shared_task(name="campaigns.fan_out_webhooks", ignore_result=True)
def fan_out_webhooks() -> int:
    """Create the deliveries of new events, then queue them and any whose
    task was lost."""
    now = timezone.now()
    new = webhooks.fan_out(now)
    slack = max(30.0, 3 * float(settings.BLAST_WEBHOOK_PERIOD_S))
    dispatch_deliveries([*new, *webhooks.overdue(now, slack_s=slack)])
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
    return webhooks.prune()


def dispatch_deliveries(delivery_ids: Iterable[int], countdown: float | None = None) -> None:
    for delivery_id in dict.fromkeys(delivery_ids):
        try:
            deliver_webhook.apply_async((delivery_id,), countdown=countdown, queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except (KombuError, RedisError, OSError):
            logger.warning("⚠️ could not queue webhook delivery %s; the next fan-out retries it", delivery_id)
            return
