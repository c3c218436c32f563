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

:func:`attempt` (Celery task ``campaigns.deliver_webhook``) claims a due
delivery with one conditional UPDATE, POSTs it signed (HMAC-SHA256 over
``<timestamp>.<body>``: :mod:`monitoring.signing`, the same scheme as the
platform's alert webhooks), and records the outcome: a 2xx is
``delivered``; anything else goes back to ``pending`` after an exponential
backoff (``BASE * 2^(attempt-1)``, at most ``MAX``) until
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

from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

from campaigns import conf
from campaigns.models import DeliveryStatus, FeedCursor, MessageEvent, TenantWebhook, WebhookDelivery
from instances.models import ConnectionEvent
from monitoring import delivery as http
from monitoring import outbound
from monitoring.transitions import Cursor

logger = logging.getLogger("blast.webhooks")

MESSAGE_FEED = "message_events"
INSTANCE_FEED = "connection_events"
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
    batch = max(1, int(conf.get("BLAST_WEBHOOK_BATCH")))
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
                    if webhook["instance_id"] not in (None, row["instance_id"]) or row["at"] < webhook["created_at"]:
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
    delivery = WebhookDelivery(webhook_id=webhook_id, event_count=len(events), next_attempt_at=now, created_at=now)
    delivery.payload = {"delivery": str(delivery.uid), "webhook": webhook_key, "events": events}
    return delivery


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


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return http.backoff(
        attempt, float(conf.get("BLAST_WEBHOOK_RETRY_BASE_S")), float(conf.get("BLAST_WEBHOOK_RETRY_MAX_S"))
    )


def url_problem(url: str) -> str:
    """Why ``url`` may not be saved as a webhook target, or "" (the policy of
    :func:`monitoring.outbound.url_problem`, without DNS)."""
    return outbound.url_problem(url, bool(conf.get("BLAST_WEBHOOK_ALLOW_PRIVATE")))


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


def claim(delivery_id: int, now: dt.datetime) -> bool:
    """Take the delivery for one attempt, atomically; False if not ours."""
    return http.claim_row(WebhookDelivery, delivery_id, now, float(conf.get("BLAST_WEBHOOK_TIMEOUT_S")))


@dataclass(frozen=True)
class Outcome:
    status: str
    attempts: int
    retry_in: float | None = None


def attempt(delivery_id: int, now: dt.datetime | None = None) -> Outcome | None:
    """Try one delivery now; None when it is not due or another sender has it."""
    now = now or timezone.now()
    if not claim(delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").get(id=delivery_id)
    webhook: TenantWebhook = delivery.webhook
    if not webhook.enabled:
        return _record(delivery, outbound.Response(None, "", "webhook disabled"), final=True)
    # Checks the URL and every resolved address, then connects to those.
    response = http.post(
        webhook.url,
        webhook.secret,
        body_of(delivery),
        {
            "User-Agent": USER_AGENT,
            "X-Blast-Delivery": str(delivery.uid),
            "X-Blast-Event-Count": str(delivery.event_count),
        },
        float(conf.get("BLAST_WEBHOOK_TIMEOUT_S")),
    )
    return _record(delivery, response)


def _record(delivery: WebhookDelivery, response: outbound.Response, final: bool = False) -> Outcome:
    now = timezone.now()
    fields: dict[str, Any] = {
        "last_status_code": response.status_code,
        "response_excerpt": response.excerpt,
        "error": response.error[:500],
        "claimed_until": None,
        "updated_at": now,
    }
    retry_in: float | None = None
    name = f"webhook {delivery.webhook_id}"
    if response.ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
        logger.info(
            "📨 delivery %s (%d events) to %s: HTTP %s, attempt %s",
            delivery.uid,
            delivery.event_count,
            name,
            response.status_code,
            delivery.attempts,
        )
    elif final or delivery.attempts >= int(conf.get("BLAST_WEBHOOK_MAX_ATTEMPTS")):
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        logger.warning(
            "🪦 delivery %s to %s gave up after %s attempts: %s",
            delivery.uid,
            name,
            delivery.attempts,
            response.detail or response.error or response.status_code,
        )
    else:
        retry_in = backoff(delivery.attempts)
        fields.update(status=DeliveryStatus.PENDING, next_attempt_at=now + dt.timedelta(seconds=retry_in))
        logger.warning(
            "📭 delivery %s to %s failed (attempt %s: %s); retry in %.1fs",
            delivery.uid,
            name,
            delivery.attempts,
            response.detail or response.error or response.status_code,
            retry_in,
        )
    # Conditional on our claim: a sender that took over after it expired wins.
    WebhookDelivery.objects.filter(id=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts).update(
        **fields
    )
    return Outcome(fields["status"], delivery.attempts, retry_in)


def overdue(now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
    """Deliveries whose hint was evidently lost (see ``monitoring.delivery.overdue_rows``)."""
    return http.overdue_rows(WebhookDelivery, now, slack_s, limit)


def prune(now: dt.datetime | None = None) -> int:
    """Delete finished deliveries older than ``BLAST_WEBHOOK_RETENTION_DAYS``."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=float(conf.get("BLAST_WEBHOOK_RETENTION_DAYS")))
    deleted, _ = WebhookDelivery.objects.filter(
        status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED], created_at__lt=cutoff
    ).delete()
    return int(deleted)
