"""A tenant's monthly message quota.

The quota counts the messages created in the current calendar month (UTC)
that were or may still be sent: every message row of the month except those
failed before any attempt (opted out, cancelled, invalid text, expired).
Checking and creating happen in one transaction that holds the tenant's
:class:`~campaigns.models.TenantQuota` row locked, so concurrent requests on
any number of web processes cannot overshoot the limit together. Tenants
without a limit pay one indexed lookup and take no lock.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import IntegrityError, transaction

from campaigns.models import Message, MessageStatus, TenantQuota


def month_start(now: dt.datetime) -> dt.datetime:
    """The first instant of ``now``'s calendar month, in UTC."""
    now = now.astimezone(dt.UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: dt.datetime) -> dt.datetime:
    start = month_start(now)
    return (start + dt.timedelta(days=32)).replace(day=1)


def limit_of(tenant_id: int) -> int:
    """The tenant's monthly limit; 0 means unlimited."""
    own = TenantQuota.objects.filter(tenant_id=tenant_id).values_list("monthly_messages", flat=True).first()
    return int(own if own is not None else settings.BLAST_TENANT_MONTHLY_QUOTA)


def used(tenant_id: int, now: dt.datetime) -> int:
    """Messages counted against the tenant's quota this month."""
    return (
        Message.objects.filter(tenant_id=tenant_id, created_at__gte=month_start(now))
        .exclude(status=MessageStatus.FAILED, attempts=0)
        .count()
    )


def _lock(tenant_id: int) -> None:
    if TenantQuota.objects.select_for_update().filter(tenant_id=tenant_id).exists():
        return
    try:
        with transaction.atomic():
            TenantQuota.objects.create(tenant_id=tenant_id)
    except IntegrityError:
        pass  # created by a concurrent request
    TenantQuota.objects.select_for_update().filter(tenant_id=tenant_id).exists()


def reserve(tenant_id: int, wanted: int, now: dt.datetime) -> int:
    """How many of ``wanted`` new messages the tenant may create now.

    Must run inside the transaction that creates them (it raises otherwise):
    with a limit, the tenant's quota row stays locked until that transaction
    ends, so the next caller counts these messages too.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota.reserve() must run inside the transaction that creates the messages")
    if wanted <= 0:
        return 0
    limit = limit_of(tenant_id)
    if limit <= 0:
        return wanted
    _lock(tenant_id)
    limit = limit_of(tenant_id)  # re-read under the lock: an operator may have changed it
    if limit <= 0:
        return wanted
    return max(0, min(wanted, limit - used(tenant_id, now)))


def status(tenant_id: int, now: dt.datetime) -> dict[str, object]:
    """The quota as the API shows it."""
    limit = limit_of(tenant_id)
    count = used(tenant_id, now)
    return {
        "monthly_limit": limit or None,
        "used": count,
        "remaining": max(0, limit - count) if limit else None,
        "resets_at": next_month_start(now),
    }
