"""Queuing the campaigns app's Celery tasks, by their registered names.

The campaign lifecycle and the beat job queue an expansion without importing
:mod:`campaigns.tasks`: the tasks module is the Celery entry point and imports
them, so the dependency runs one way (tasks -> jobs, expansion -> lifecycle ->
dispatch). The names below are the ones the tasks are registered under.

Queuing is best effort: a broker error is logged, not raised, because the
beat job's stall sweep (``campaigns.jobs.redispatch_stalled``) queues a lost
expansion again.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger("blast.campaigns")

EXPAND_CAMPAIGN = "campaigns.expand_campaign"


def dispatch_expansion(campaign_id: int) -> None:
    """Queue the expansion task of ``campaign_id``; the stall sweep catches a lost one."""
    try:
        current_app.send_task(EXPAND_CAMPAIGN, (campaign_id,), queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    except (KombuError, RedisError, OSError):
        logger.warning("⚠️ could not queue the expansion of campaign %s; the beat job retries it", campaign_id)
