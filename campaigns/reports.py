"""Campaign reports: counts by status, progress, throughput, failures by
reason, and every message as CSV.

Everything is computed from the message rows with a few aggregate queries
(served by the ``(campaign, status)`` index), so a report is always exact
and needs no bookkeeping of its own.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Max, Min, Q

from campaigns.models import Campaign, CampaignStatus, Contact, Message, MessageStatus

FINAL = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)
RECENT_S = 600

CSV_COLUMNS = [
    "message_id",
    "to",
    "instance",
    "status",
    "failure_reason",
    "error",
    "attempts",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
]


def _per_minute(count: int, seconds: float) -> float | None:
    return round(count * 60.0 / seconds, 2) if seconds > 0 and count else None


def report(campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    """The report of ``campaign`` at ``now`` (docs/CAMPAIGNS.md)."""
    messages = Message.objects.filter(campaign=campaign)
    by_status = {status: 0 for status in MessageStatus.values}
    for status, n in messages.values_list("status").annotate(n=Count("id")).values_list("status", "n"):
        by_status[status] = n
    total = sum(by_status.values())
    failures = dict(
        messages.filter(status=MessageStatus.FAILED)
        .values_list("failure_reason")
        .annotate(n=Count("id"))
        .values_list("failure_reason", "n")
    )
    if campaign.expanded_at is not None or campaign.contact_list_id is None:
        recipients = total
    else:
        pending = Contact.objects.filter(
            contact_list_id=campaign.contact_list_id, id__gt=campaign.expansion_cursor
        ).count()
        recipients = total + pending
    done = sum(by_status[s] for s in FINAL)
    sent = messages.filter(sent_at__isnull=False).aggregate(
        n=Count("id"),
        first=Min("sent_at"),
        last=Max("sent_at"),
        recent=Count("id", filter=Q(sent_at__gte=now - dt.timedelta(seconds=RECENT_S))),
        hour=Count("id", filter=Q(sent_at__gte=now - dt.timedelta(hours=1))),
    )
    span = (sent["last"] - sent["first"]).total_seconds() if sent["first"] and sent["last"] else 0.0
    recent_rate = _per_minute(sent["recent"], RECENT_S)
    queued = by_status[MessageStatus.QUEUED]
    remaining = max(0, recipients - done)
    eta = None
    if recent_rate and remaining and campaign.status == CampaignStatus.RUNNING:
        eta = now + dt.timedelta(minutes=remaining / recent_rate)
    return {
        "campaign": str(campaign.key),
        "name": campaign.name,
        "status": campaign.status,
        "pause_reason": campaign.pause_reason,
        "status_message": campaign.status_message,
        "recipients": recipients,
        "messages": total,
        "counts": by_status,
        "progress": {
            "done": done,
            "remaining": remaining,
            "percent": round(100.0 * done / recipients, 1) if recipients else 100.0,
            "expanded": campaign.expanded_at is not None,
        },
        "throughput": {
            "sent": sent["n"],
            "first_sent_at": sent["first"],
            "last_sent_at": sent["last"],
            "per_minute_overall": _per_minute(sent["n"], span),
            "per_minute_last_10_min": recent_rate,
            "sent_last_hour": sent["hour"],
            "estimated_completion_at": eta,
            "queued": queued,
        },
        "failures": {reason or "unknown": n for reason, n in sorted(failures.items())},
        "started_at": campaign.started_at,
        "completed_at": campaign.completed_at,
        "cancelled_at": campaign.cancelled_at,
        "generated_at": now,
    }


class _Echo:
    def write(self, value: str) -> str:
        return value


def _safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _stamp(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else ""


def csv_lines(campaign: Campaign) -> Iterator[str]:
    """Every message of the campaign as CSV lines (header first), read in
    chunks so that a campaign of any size streams in bounded memory."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows = (
        Message.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list(
            "key",
            "to",
            "instance__name",
            "status",
            "failure_reason",
            "error",
            "attempts",
            "created_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
        )
    )
    for key, to, instance, status, reason, error, attempts, *stamps in rows.iterator(chunk_size=2000):
        yield writer.writerow(
            [str(key), to, _safe(instance), status, reason, _safe(error), attempts, *(_stamp(s) for s in stamps)]
        )
