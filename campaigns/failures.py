"""Failing messages before they are sent, with their status events: the one
way every path does it. :func:`fail_unsent` fails queued rows (a cancelled
campaign, an opt-out, a message that expired in its queue);
:func:`record_created_failed` writes the events of rows created failed (an
opted-out number, a text that cannot be sent).

By default only rows still ``queued`` with ``attempts == 0`` are failed: a
message the worker has written to a gateway (``attempts > 0``) may have been
delivered, so it is left to the worker, which learns its outcome by sending
it again with the same client id (the gateway answers the original ``ack``).
An expired message is failed even then (``attempted=True``): its deadline
says it must not go out late, and the worker reads it only while no answer to it is awaited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from campaigns.models import Message, MessageEvent, MessageStatus


def fail_unsent(
    messages: QuerySet[Message], reason: str, error: str, now: dt.datetime, *, attempted: bool = False
) -> list[int]:
    """Fail the queued rows of ``messages`` that were never attempted (any
    queued row with ``attempted``) with ``reason``; write one ``failed``
    event each; return their ids. Rows are locked first, so a concurrent
    status change is never overwritten."""
    queued: dict[str, Any] = (
        {"status": MessageStatus.QUEUED} if attempted else {"status": MessageStatus.QUEUED, "attempts": 0}
    )
    with transaction.atomic():
        rows = list(
            messages.select_for_update().filter(**queued).values("id", "tenant_id", "instance_id", "campaign_id")
        )
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        Message.objects.filter(id__in=ids, **queued).update(
            status=MessageStatus.FAILED, failure_reason=reason, error=error[:500], failed_at=now
        )
        _failed_events(
            [(row["id"], row["tenant_id"], row["instance_id"], row["campaign_id"], reason) for row in rows], now
        )
    return ids


def record_created_failed(messages: Sequence[Message], now: dt.datetime) -> None:
    """Write the ``failed`` event of each of ``messages``: rows just saved
    (with their ids) with status failed and their ``failure_reason``."""
    _failed_events([(m.pk, m.tenant_id, m.instance_id, m.campaign_id, m.failure_reason) for m in messages], now)


def _failed_events(rows: Sequence[tuple[int, int, int | None, int | None, str]], now: dt.datetime) -> None:
    """One ``failed`` event per (message, tenant, instance, campaign, reason)."""
    MessageEvent.objects.bulk_create(
        [
            MessageEvent(
                message_id=message_id,
                tenant_id=tenant_id,
                instance_id=instance_id,
                campaign_id=campaign_id,
                status=MessageStatus.FAILED,
                at=now,
                data={"reason": reason},
            )
            for message_id, tenant_id, instance_id, campaign_id, reason in rows
        ],
        batch_size=500,
    )
