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

from campaigns.models import SKIP_REASONS, Campaign, CampaignStatus, Contact, InboundMessage, Message, MessageStatus
from instances.models import Instance

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


# A rate is never taken over less than a minute: two sends a second apart
# are two messages in their minute, not 120 per minute.
MIN_RATE_SPAN_S = 60.0
FINISHED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


def _per_minute(count: int, seconds: float) -> float:
    """``count`` sends over ``seconds`` (at least :data:`MIN_RATE_SPAN_S`), per minute."""
    return round(count * 60.0 / max(seconds, MIN_RATE_SPAN_S), 2)


def _sending_end(campaign: Campaign, last_sent: dt.datetime, now: dt.datetime) -> dt.datetime:
    """Where the campaign's rates end: now while it may still send, its last
    send once it is completed or cancelled (so that its figures stay put)."""
    return last_sent if campaign.status in FINISHED else max(now, last_sent)


def _replies(campaign: Campaign) -> dict[str, Any]:
    """Inbound messages that replied to the campaign's messages: how many,
    from how many recipients, and that share of the recipients sent to."""
    found = InboundMessage.objects.filter(campaign=campaign).aggregate(
        n=Count("id"), senders=Count("sender", distinct=True)
    )
    sent = Message.objects.filter(campaign=campaign, sent_at__isnull=False).count()
    return {
        "messages": found["n"],
        "recipients": found["senders"],
        "rate_percent": round(100.0 * found["senders"] / sent, 1) if sent else None,
    }


def _per_instance(campaign: Campaign) -> list[dict[str, Any]]:
    """Each instance of the rotation (and any other that holds its messages):
    its state and its share, with what moved off it (campaigns.reroute)."""
    messages = Message.objects.filter(campaign=campaign)
    shares = {
        row["instance_id"]: row
        for row in messages.values("instance_id").annotate(
            queued=Count("id", filter=Q(status=MessageStatus.QUEUED)),
            sent=Count("id", filter=Q(sent_at__isnull=False)),
            failed=Count("id", filter=Q(status=MessageStatus.FAILED)),
            moved_in=Count("id", filter=Q(moved_from__isnull=False)),
        )
    }
    moved_out = dict(
        messages.filter(moved_from__isnull=False)
        .values_list("moved_from_id")
        .annotate(n=Count("id"))
        .values_list("moved_from_id", "n")
    )
    ids = set(shares) | set(moved_out) | set(campaign.instances.values_list("id", flat=True))
    rows = Instance.objects.filter(pk__in=ids).order_by("id").values_list("pk", "key", "name", "status")
    empty = {"queued": 0, "sent": 0, "failed": 0, "moved_in": 0}
    return [
        {
            "instance": str(key),
            "name": name,
            "status": status,
            **{field: shares.get(pk, empty)[field] for field in empty},
            "moved_out": moved_out.get(pk, 0),
        }
        for pk, key, name, status in rows
    ]


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
        hour=Count("id", filter=Q(sent_at__gte=now - dt.timedelta(hours=1))),
    )
    # Both rates are sends per minute over a window that ends at the same
    # moment and never starts before the first send (docs/CAMPAIGNS.md).
    overall_rate = recent_rate = None
    if sent["first"] is not None and sent["last"] is not None:
        end = _sending_end(campaign, sent["last"], now)
        recent_start = max(sent["first"], end - dt.timedelta(seconds=RECENT_S))
        recent = messages.filter(sent_at__gte=recent_start, sent_at__lte=end).count()
        overall_rate = _per_minute(sent["n"], (end - sent["first"]).total_seconds())
        recent_rate = _per_minute(recent, (end - recent_start).total_seconds())
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
            "per_minute_overall": overall_rate,
            "per_minute_last_10_min": recent_rate,
            "sent_last_hour": sent["hour"],
            "estimated_completion_at": eta,
            "queued": queued,
        },
        "failures": {reason or "unknown": n for reason, n in sorted(failures.items())},
        # Recipients never tried (opted out, not on the network): also in failures.
        "skipped": {
            "total": sum(failures.get(reason, 0) for reason in SKIP_REASONS),
            "by_reason": {reason: failures[reason] for reason in SKIP_REASONS if failures.get(reason)},
        },
        "replies": _replies(campaign),
        "instances": _per_instance(campaign),
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
