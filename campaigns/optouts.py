"""The opt-out list: numbers a tenant never sends to again.

An opt-out is added by an inbound stop keyword (campaigns.inbound), through
the API or in the admin. Adding one fails the tenant's queued messages to
that number that were never attempted (reason ``opted_out``); campaign
expansion and the message API check the list before creating a message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.failures import fail_unsent
from campaigns.models import FailureReason, Message, OptOut, OptOutSource
from instances.models import Tenant

ERROR = "The recipient opted out."


def is_opted_out(tenant_id: int, phone: str) -> bool:
    return OptOut.objects.filter(tenant_id=tenant_id, phone=phone).exists()


def opted_out_among(tenant_id: int, phones: Iterable[str]) -> set[str]:
    """Which of ``phones`` (E.164) the tenant may not send to."""
    wanted = list(set(phones))
    found: set[str] = set()
    for start in range(0, len(wanted), 900):  # under SQLite's parameter limit
        chunk = wanted[start : start + 900]
        found.update(OptOut.objects.filter(tenant_id=tenant_id, phone__in=chunk).values_list("phone", flat=True))
    return found


def add(
    tenant: Tenant | int,
    phone: str,
    source: str = OptOutSource.API,
    *,
    instance_id: int | None = None,
    note: str = "",
    now: dt.datetime | None = None,
) -> tuple[OptOut, bool]:
    """Opt ``phone`` (E.164) out for the tenant; idempotent. Returns the row
    and whether it is new. Unsent queued messages to it fail at once."""
    now = now or timezone.now()
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    try:
        with transaction.atomic():
            row, created = OptOut.objects.get_or_create(
                tenant_id=tenant_id,
                phone=phone,
                defaults={"source": source, "instance_id": instance_id, "note": note[:200], "created_at": now},
            )
    except IntegrityError:  # a concurrent add of the same number
        row, created = OptOut.objects.get(tenant_id=tenant_id, phone=phone), False
    fail_unsent(Message.objects.filter(tenant_id=tenant_id, to=phone), FailureReason.OPTED_OUT, ERROR, now)
    return row, created


def remove(tenant: Tenant | int, phone: str, *, only_source: str | None = None) -> bool:
    """Take ``phone`` off the list (optionally only an opt-out of that
    source); True if it was on it. Messages already failed stay failed."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    rows = OptOut.objects.filter(tenant_id=tenant_id, phone=phone)
    if only_source is not None:
        rows = rows.filter(source=only_source)
    deleted, _ = rows.delete()
    return deleted > 0
