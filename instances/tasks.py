"""Celery tasks of the instances app: the recovery jobs, run by beat."""

from __future__ import annotations

from celery import shared_task

from instances import recovery


@shared_task(name="instances.dispatch_due_retries", ignore_result=True)
def dispatch_due_retries() -> int:
    return recovery.dispatch_due_retries()


@shared_task(name="instances.advance_breakers", ignore_result=True)
def advance_breakers() -> int:
    return recovery.advance_breakers()


@shared_task(name="instances.recover_lost_sessions", ignore_result=True)
def recover_lost_sessions() -> int:
    return recovery.recover_lost_sessions()


@shared_task(name="instances.clean_stale_connecting", ignore_result=True)
def clean_stale_connecting() -> int:
    return recovery.clean_stale_connecting()
