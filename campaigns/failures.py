"""Failing messages that were never sent, with their status events.

Only rows still ``queued`` with ``attempts == 0`` are failed: a message the
worker has written to a gateway (``attempts > 0``) may have been delivered,
so it is left to the worker, which learns its outcome by sending it again
with the same client id (the gateway answers the original ``ack``).
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import QuerySet

from campaigns.models import Message, MessageEvent, MessageStatus


def fail_unsent(messages: QuerySet[Message], reason: str, error: str, now: dt.datetime) -> list[int]:
    """Fail the queued, never-attempted rows of ``messages`` with ``reason``;
    write one ``failed`` event each; return their ids. Rows are locked first,
    so a concurrent status change is never overwritten."""
    with transaction.atomic():
        rows = list(
            messages.select_for_update()
            .filter(status=MessageStatus.QUEUED, attempts=0)
            .values("id", "tenant_id", "instance_id", "campaign_id")
        )
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        Message.objects.filter(id__in=ids, status=MessageStatus.QUEUED, attempts=0).update(
            status=MessageStatus.FAILED, failure_reason=reason, error=error[:500], failed_at=now
        )
        MessageEvent.objects.bulk_create(
            [
                MessageEvent(
                    message_id=row["id"],
                    tenant_id=row["tenant_id"],
                    instance_id=row["instance_id"],
                    campaign_id=row["campaign_id"],
                    status=MessageStatus.FAILED,
                    at=now,
                    data={"reason": reason},
                )
                for row in rows
            ],
            batch_size=500,
        )
    return ids
