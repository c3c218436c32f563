"""Celery tasks of the instances app: the recovery jobs, run by beat.

Each run logs at DEBUG when it found nothing to do and says at INFO (or
louder) what it did, so that a quiet platform has quiet logs."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from instances import recovery, restrictions

logger = logging.getLogger("blast.recovery")


@shared_task(name="instances.dispatch_due_retries", ignore_result=True)
def dispatch_due_retries() -> int:
    dispatched = recovery.dispatch_due_retries()
    if dispatched:
        logger.info("🔁 dispatched %d instances whose retry is due or whose stop is pending", dispatched)
    else:
        logger.debug("no retry due, no stop pending")
    return dispatched


@shared_task(name="instances.advance_breakers", ignore_result=True)
def advance_breakers() -> int:
    # Each breaker moved is logged (INFO) by recovery.advance_breakers.
    moved = recovery.advance_breakers()
    # Pauses for limits end like cooldowns do (logged by restrictions).
    lifted = restrictions.lift_ended(timezone.now())
    if not moved and not lifted:
        logger.debug("no breaker cooldown ended")
    return moved


@shared_task(name="instances.recover_lost_sessions", ignore_result=True)
def recover_lost_sessions() -> int:
    # Sessions found lost are a warning of recovery's own.
    recovered = recovery.recover_lost_sessions()
    if not recovered:
        logger.debug("no session lost with its worker")
    return recovered


@shared_task(name="instances.clean_stale_connecting", ignore_result=True)
def clean_stale_connecting() -> int:
    # Stale markers found are a warning of recovery's own.
    recovered = recovery.clean_stale_connecting()
    if not recovered:
        logger.debug("no stale connecting marker")
    return recovered
