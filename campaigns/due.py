"""Queued messages that are due, and the sweep that wakes their owners.

Every new message sends a hint to its instance's owner; this sweep is the
net under that hint (a lost hint, a message whose ``not_before`` passed while
nobody looked): beat runs it every ``BLAST_RECOVERY_PERIOD_S``, and /health's
beat check watches it with the engine's recovery jobs.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from campaigns.models import Message, MessageStatus
from instances import hints
from instances.models import Instance, Status

# Ids per ``IN (...)`` list: below SQLite's bound on variables per statement.
CHUNK = 500


def instances_with_due_messages(now: dt.datetime | None = None, among: list[int] | None = None) -> list[int]:
    """Instances with queued messages that are due: every one (the periodic
    sweep), or those of ``among`` (a worker's read of many senders)."""
    now = now or timezone.now()
    due = (
        Message.objects.filter(status=MessageStatus.QUEUED)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .values_list("instance_id", flat=True)
        .distinct()
    )
    if among is None:
        return list(due)
    chunks = (among[start : start + CHUNK] for start in range(0, len(among), CHUNK))
    return [instance_id for chunk in chunks for instance_id in due.filter(instance_id__in=chunk)]


def dispatch_due_messages() -> int:
    """Wake the owners of connected instances that have due queued messages."""
    due = set(instances_with_due_messages())
    if not due:
        return 0
    connected = list(Instance.objects.filter(id__in=due, status=Status.CONNECTED).values_list("id", flat=True))
    hints.send(connected)
    return len(connected)
