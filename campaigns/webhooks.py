"""Status webhooks: message status changes and instance events, posted to
the tenants' URLs, signed, retried with backoff, every delivery recorded.

Two append-only logs feed them: :class:`~campaigns.models.MessageEvent`
(written with every message status change) and
:class:`~instances.models.ConnectionEvent` (everything that happens to an
instance's session). :func:`fan_out` (beat job ``campaigns.fan_out_webhooks``)
reads each log past its stored cursor (ids ascending; ids skipped by a
transaction still open are read when they show up:
:class:`monitoring.transitions.Cursor`) in chunks; for each chunk, in one
transaction, it creates the deliveries (one per webhook, up to
``BLAST_WEBHOOK_BATCH`` events each, the body fixed at creation) and moves
the cursor. An event is therefore put in a delivery once per webhook, never
twice, none skipped. A webhook receives the events of its tenant (or of its
one instance) that happened after it was created.

:func:`attempt` (Celery task ``campaigns.deliver_webhook``) runs the
platform's one delivery engine, :class:`monitoring.delivery.Deliveries`, the
alert webhooks' too, over :data:`DELIVERIES`: it claims a due delivery with
one conditional UPDATE, POSTs it signed (HMAC-SHA256 over
``<timestamp>.<body>``: :mod:`monitoring.signing`), and records the outcome:
a 2xx is ``delivered``; anything else goes back to ``pending`` after an
exponential backoff (``BASE * 2^(attempt-1)``, at most ``MAX``) until
``BLAST_WEBHOOK_MAX_ATTEMPTS`` failed attempts (``failed``). Delivery is at
least once: receivers de-duplicate on each event's ``id``.

Webhook URLs follow the address policy of :mod:`monitoring.outbound`
(public addresses only, no ``user:pass@``; ``BLAST_WEBHOOK_ALLOW_PRIVATE`` is
for development and tests): checked when the URL is saved and on every
attempt, which resolves the host once, checks every address and connects to
those addresses only. A failed attempt records a fixed summary ("connection
failed", "timed out", "refused by address policy", "HTTP 503"), never the
network's own words, which only the operators' log gets. URLs and secrets are
never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

from campaigns.models import FeedCursor, InboundMessage, MessageEvent, TenantWebhook, WebhookDelivery
from instances.models import ConnectionEvent
from monitoring import delivery, outbound
from monitoring.models import DeliveryStatus
from monitoring.transitions import Cursor

logger = logging.getLogger("blast.webhooks")

MESSAGE_FEED = "message_events"
INSTANCE_FEED = "connection_events"
INBOUND_FEED = "inbound_messages"
CHUNK = 1000
USER_AGENT = "Blast-Webhooks/1"
# How long a gap in an event log (an id taken by a transaction not yet
# committed) is waited for before it is given up as rolled back.
GAP_GRACE_S = 300.0


# -- the events as tenants see them ----------------------------------------------------


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def message_event(row: dict[str, Any]) -> dict[str, Any]:
    """A ``message.status`` event (docs/CAMPAIGNS.md)."""
    data = row["data"] or {}
    return {
        "id": f"me_{row['id']}",
        "type": "message.status",
        "at": _iso(row["at"]),
        "instance": {"id": str(row["instance__key"]), "name": row["instance__name"]},
        "message": {
            "id": str(row["message__key"]),
            "to": row["message__to"],
            "status": row["status"],
            "campaign": str(row["campaign__key"]) if row["campaign__key"] else None,
            "failure_reason": data.get("reason", "") if row["status"] == "failed" else "",
            "error": str(data.get("error", ""))[:200] if row["status"] == "failed" else "",
        },
    }


def inbound_event(row: dict[str, Any]) -> dict[str, Any]:
    """A ``message.inbound`` event (docs/CAMPAIGNS.md): a message an instance received."""
    return {
        "id": f"im_{row['id']}",
        "type": "message.inbound",
        "at": _iso(row["received_at"]),
        "instance": {"id": str(row["instance__key"]), "name": row["instance__name"]},
        "inbound": {
            "id": str(row["key"]),
            "from": row["sender"],
            "text": row["text"],
            "action": row["action"],
            "in_reply_to": str(row["in_reply_to__key"]) if row["in_reply_to__key"] else None,
            "campaign": str(row["campaign__key"]) if row["campaign__key"] else None,
        },
    }


def instance_event(row: dict[str, Any]) -> dict[str, Any]:
    """An ``instance.event`` event (docs/CAMPAIGNS.md)."""
    return {
        "id": f"ce_{row['id']}",
        "type": "instance.event",
        "at": _iso(row["at"]),
        "instance": {"id": str(row["instance__key"]), "name": row["instance__name"]},
        "event": {"kind": row["kind"], "reason": row["reason"], "message": row["message"]},
    }


@dataclass(frozen=True)
class Feed:
    key: str
    model: type[Model]
    flag: str  # the TenantWebhook field that subscribes to it
    fields: tuple[str, ...]
    tenant_field: str
    build: Callable[[dict[str, Any]], dict[str, Any]]
    at_field: str = "at"


FEEDS = (
    Feed(
        MESSAGE_FEED,
        MessageEvent,
        "message_events",
        (
            "id",
            "at",
            "status",
            "data",
            "tenant_id",
            "instance_id",
            "instance__key",
            "instance__name",
            "message__key",
            "message__to",
            "campaign__key",
        ),
        "tenant_id",
        message_event,
    ),
    Feed(
        INSTANCE_FEED,
        ConnectionEvent,
        "instance_events",
        (
            "id",
            "at",
            "kind",
            "reason",
            "message",
            "instance_id",
            "instance__key",
            "instance__name",
            "instance__tenant_id",
        ),
        "instance__tenant_id",
        instance_event,
    ),
    Feed(
        INBOUND_FEED,
        InboundMessage,
        "inbound_events",
        (
            "id",
            "key",
            "received_at",
            "sender",
            "text",
            "action",
            "tenant_id",
            "instance_id",
            "instance__key",
            "instance__name",
            "in_reply_to__key",
            "campaign__key",
        ),
        "tenant_id",
        inbound_event,
        at_field="received_at",
    ),
)


# -- fan-out -------------------------------------------------------------------------------


def _lock_cursor(key: str) -> tuple[FeedCursor, Cursor]:
    row, _ = FeedCursor.objects.select_for_update().get_or_create(key=key)
    return row, Cursor.from_json(row.data)


def _save_cursor(row: FeedCursor, cursor: Cursor, now: dt.datetime) -> None:
    row.data, row.updated_at = cursor.as_json(), now
    row.save(update_fields=["data", "updated_at"])


def _fan_out_feed(feed: Feed, now: dt.datetime) -> list[int]:
    created: list[int] = []
    batch = max(1, int(settings.BLAST_WEBHOOK_BATCH))
    while True:
        with transaction.atomic():
            cursor_row, cursor = _lock_cursor(feed.key)
            webhooks = list(
                TenantWebhook.objects.filter(enabled=True, **{feed.flag: True}).values(
                    "id", "key", "tenant_id", "instance_id", "created_at"
                )
            )
            if not webhooks:
                # Nobody listens: skip to the end instead of reading the log.
                last = feed.model.objects.order_by("-id").values_list("id", flat=True).first() or 0
                _save_cursor(cursor_row, Cursor(last_id=max(cursor.last_id, last)), now)
                return created
            gaps = cursor.unread_ids()
            query = Q(id__gt=cursor.last_id) | Q(id__in=gaps) if gaps else Q(id__gt=cursor.last_id)
            rows = list(feed.model.objects.filter(query).order_by("id").values(*feed.fields)[:CHUNK])
            by_tenant: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for webhook in webhooks:
                by_tenant[webhook["tenant_id"]].append(webhook)
            events: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                for webhook in by_tenant.get(row[feed.tenant_field], ()):
                    if (
                        webhook["instance_id"] not in (None, row["instance_id"])
                        or row[feed.at_field] < webhook["created_at"]
                    ):
                        continue
                    events[webhook["id"]].append(feed.build(row))
            keys = {w["id"]: str(w["key"]) for w in webhooks}
            deliveries = [
                _delivery(webhook_id, keys[webhook_id], chunk, now)
                for webhook_id, payloads in events.items()
                for chunk in (payloads[i : i + batch] for i in range(0, len(payloads), batch))
            ]
            created += _save_deliveries(deliveries)
            cursor.advance([row["id"] for row in rows], now.timestamp(), GAP_GRACE_S)
            _save_cursor(cursor_row, cursor, now)
        if len(rows) < CHUNK:
            return created


def _delivery(webhook_id: int, webhook_key: str, events: list[dict[str, Any]], now: dt.datetime) -> WebhookDelivery:
    row = WebhookDelivery(webhook_id=webhook_id, event_count=len(events), next_attempt_at=now, created_at=now)
    row.payload = {"delivery": str(row.uid), "webhook": webhook_key, "events": events}
    return row


def _save_deliveries(deliveries: list[WebhookDelivery]) -> list[int]:
    if not deliveries:
        return []
    saved = WebhookDelivery.objects.bulk_create(deliveries, batch_size=200)
    if any(d.pk is None for d in saved):  # a backend that returns no ids
        uids = [d.uid for d in deliveries]
        return list(WebhookDelivery.objects.filter(uid__in=uids).values_list("id", flat=True))
    return [d.pk for d in saved]


def fan_out(now: dt.datetime | None = None) -> list[int]:
    """Create the deliveries of every event logged since the last run;
    return their ids (for the caller to dispatch)."""
    now = now or timezone.now()
    created: list[int] = []
    for feed in FEEDS:
        created += _fan_out_feed(feed, now)
    return created


# -- delivery --------------------------------------------------------------------------------


def url_problem(url: str) -> str:
    """Why ``url`` may not be saved as a webhook target, or "" (the policy of
    :func:`monitoring.outbound.url_problem`, without DNS)."""
    return outbound.url_problem(url, bool(settings.BLAST_WEBHOOK_ALLOW_PRIVATE))


def _policy() -> delivery.Policy:
    return delivery.Policy(
        max_attempts=int(settings.BLAST_WEBHOOK_MAX_ATTEMPTS),
        retry_base_s=float(settings.BLAST_WEBHOOK_RETRY_BASE_S),
        retry_max_s=float(settings.BLAST_WEBHOOK_RETRY_MAX_S),
        timeout_s=float(settings.BLAST_WEBHOOK_TIMEOUT_S),
    )


def _body(row: WebhookDelivery) -> bytes:
    return json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()


DELIVERIES = delivery.Deliveries(
    model=WebhookDelivery,
    policy=_policy,
    body=_body,
    headers=lambda row: {
        "User-Agent": USER_AGENT,
        "X-Blast-Delivery": str(row.uid),
        "X-Blast-Event-Count": str(row.event_count),
    },
    subject=lambda row: f"delivery {row.uid} ({row.event_count} events)",
    target=lambda row: f"webhook {row.webhook_id}",
)


def attempt(delivery_id: int, now: dt.datetime | None = None) -> delivery.Outcome | None:
    """Try one status webhook delivery now (:meth:`monitoring.delivery.Deliveries.attempt`)."""
    return DELIVERIES.attempt(delivery_id, now)


def overdue(now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
    """Deliveries whose hint was evidently lost (:meth:`monitoring.delivery.Deliveries.overdue`)."""
    return DELIVERIES.overdue(now, slack_s, limit)


def prune(now: dt.datetime | None = None) -> int:
    """Delete finished deliveries older than ``BLAST_WEBHOOK_RETENTION_DAYS``."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=float(settings.BLAST_WEBHOOK_RETENTION_DAYS))
    deleted, _ = WebhookDelivery.objects.filter(
        status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED], created_at__lt=cutoff
    ).delete()
    return int(deleted)
