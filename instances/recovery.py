"""The recovery jobs that close the reconciliation loop (run by Celery beat).

Each finds instances whose observed state lags their desired state and
dispatches hints for them; dispatching twice never opens two sessions,
because a worker must take the instance's lease first.
"""

from __future__ import annotations

import datetime as dt
import logging

import redis
from django.conf import settings
from django.utils import timezone

from instances import attempts, hints
from instances import breaker as breakers
from instances.breaker_rows import breaker_fields, breaker_from_row
from instances.leases import Keys, holders_sync
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Instance,
    Status,
)

logger = logging.getLogger("blast.recovery")

# Statuses in which no session is held and an attempt may be due.
WAITING = sorted(attempts.WAITING)
# Statuses that claim a live session somewhere; a connecting marker is
# recovered only once it is older than any open could take.
LIVE = [Status.AWAITING_QR, Status.CONNECTED]


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def dispatch_due_retries() -> int:
    """Hint every instance that wants to run and whose retry is due, and every
    stopped instance whose row does not say stopped yet."""
    now = timezone.now()
    # Retries due before the next run are dispatched now; the worker waits
    # for each one's own (jittered) time, so that one beat tick does not turn
    # thousands of spread-out retries into one burst.
    horizon = now + dt.timedelta(seconds=settings.BLAST_RECOVERY_PERIOD_S)
    # The attempt rule (instances.attempts) in SQL; an open breaker's trial is
    # due at its cooldown's end like any retry (advance_breakers records the
    # half-open state of those that no worker has claimed yet).
    due = Instance.objects.attempt_due(now, horizon).values_list("id", flat=True)
    stopping = (
        Instance.objects.filter(desired_state=DesiredState.STOPPED)
        .filter(status__in=[*WAITING, Status.CONNECTING, *LIVE])
        .exclude(status=Status.IDLE)
        .values_list("id", flat=True)
    )
    ids = [*due, *stopping]
    hints.send(ids)
    return len(ids)


def advance_breakers() -> int:
    """Move breakers whose cooldown ended to half-open and dispatch the trial."""
    now = timezone.now()
    policy = breakers.BreakerPolicy.from_settings()
    moved: list[int] = []
    for row in CircuitBreaker.objects.filter(state=BreakerState.OPEN, cooldown_until__lte=now):
        after, transition = breakers.poll(breaker_from_row(row), now.timestamp(), policy)
        if transition is None:
            continue
        # Conditional on the row being as read: a worker or an operator may
        # have changed it meanwhile.
        updated = CircuitBreaker.objects.filter(
            pk=row.pk, state=BreakerState.OPEN, cooldown_until=row.cooldown_until
        ).update(**breaker_fields(after))
        if updated:
            ConnectionEvent.objects.create(
                instance_id=row.instance_id,
                kind=EventKind.BREAKER_HALF_OPEN,
                actor="beat",
                message="cooldown ended: one trial attempt",
            )
            logger.info("🟡 instance=%s breaker half-open", row.instance_id)
            moved.append(row.instance_id)
    hints.send(moved)
    return len(moved)


def _recover(statuses: list[str], older_than: dt.timedelta, why: str) -> int:
    """Instances that claim a session but whose lease is gone: the worker died.

    Not a failure of the instance: the retry is due at once and the breaker is
    untouched."""
    now = timezone.now()
    rows = list(
        Instance.objects.filter(status__in=statuses, status_changed_at__lte=now - older_than).values_list(
            "id", "lease_epoch", "status"
        )
    )
    if not rows:
        return 0
    held = holders_sync(_redis(), Keys(settings.BLAST_REDIS_PREFIX), [row[0] for row in rows])
    lost: list[int] = []
    for instance_id, epoch, status in rows:
        if instance_id in held:
            continue
        updated = Instance.objects.filter(id=instance_id, lease_epoch=epoch, status=status).update(
            status=Status.DISCONNECTED,
            status_changed_at=now,
            next_retry_at=now,
            owner="",
            qr_code="",
        )
        if updated:
            ConnectionEvent.objects.create(
                instance_id=instance_id, kind=EventKind.LOST, actor="beat", epoch=epoch, message=why
            )
            lost.append(instance_id)
    if lost:
        logger.warning("❌ %d sessions lost with their worker (%s); dispatching", len(lost), why)
    hints.send(lost)
    return len(lost)


def recover_lost_sessions() -> int:
    return _recover(LIVE, dt.timedelta(0), "lease vanished: worker gone")


def clean_stale_connecting() -> int:
    """Connecting markers in the database older than any open could take."""
    stale = dt.timedelta(seconds=settings.BLAST_OPEN_TIMEOUT_S + settings.BLAST_HELLO_TIMEOUT_S)
    return _recover([Status.CONNECTING], stale, "stale connecting marker")
