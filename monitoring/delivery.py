"""Posting alerts to webhooks: claim, sign, send, record, back off.

A delivery (:class:`monitoring.models.AlertDelivery`) is a database row
first; the Celery task ``monitoring.deliver_alert`` is only a hint to try it
now. Each attempt:

1. claims the row with one conditional UPDATE (pending and due, or sending
   with an expired claim) so that two senders never post it at once;
2. posts the alert's JSON, signed (:mod:`monitoring.signing`), with a
   timeout, following no redirect, to public addresses only: the URL is a
   user's, so :mod:`monitoring.outbound` checks it and every address its host
   resolves to, and connects to the addresses it checked;
3. records the outcome: a 2xx is ``delivered``; anything else (another
   status, a timeout, a refused connection) goes back to ``pending`` with
   ``next_attempt_at`` after an exponential backoff, until
   ``BLAST_ALERT_MAX_ATTEMPTS`` attempts have failed (``failed``).

A lost hint delays a delivery, it never loses it: the evaluator sweeps
pending deliveries that are overdue (:func:`overdue`). Delivery is at least
once: a sender that dies after posting and before recording is retried after
its claim expires, so receivers de-duplicate on ``X-Blast-Alert-Id``.
Webhook URLs and secrets are never logged: a URL can carry a credential.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F, Model, Q
from django.utils import timezone

from monitoring import outbound, signing
from monitoring.models import Alert, AlertDelivery, AlertWebhook, DeliveryStatus
from monitoring.outbound import Response

logger = logging.getLogger("blast.monitoring")

USER_AGENT = "Blast-Alerts/1"


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based):
    ``base * 2^(attempt-1)``, at most ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, attempt - 1)))


def payload(alert: Alert) -> dict[str, Any]:
    """The JSON document posted for ``alert`` (docs/OPERATIONS.md)."""
    return {
        "id": str(alert.uid),
        "kind": alert.kind,
        "status": alert.status,
        "severity": alert.severity,
        "summary": alert.summary,
        "at": alert.created_at.isoformat(),
        "tenant": (alert.data.get("instance") or {}).get("tenant"),
        "instance": alert.data.get("instance"),
        "data": alert.data,
    }


def body_of(alert: Alert) -> bytes:
    return json.dumps(payload(alert), separators=(",", ":"), sort_keys=True).encode()


def post(url: str, secret: str, body: bytes, extra_headers: dict[str, str], timeout: float) -> Response:
    """POST ``body`` signed with ``secret`` to a user-given ``url`` under the
    address policy of :func:`monitoring.outbound.post` (a 3xx is a failed
    delivery, never a POST elsewhere); never raises for a network error."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signing.headers(secret, int(time.time()), body),
        **extra_headers,
    }
    return outbound.post(url, body, headers, timeout)


def claim_row(model: type[Model], delivery_id: int, now: dt.datetime, timeout_s: float) -> bool:
    """Take a delivery row (alert or tenant webhook) for one attempt,
    atomically: due and pending, or claimed by a sender whose claim expired.
    False when it is not ours."""
    hold = dt.timedelta(seconds=timeout_s * 2 + 30)
    return (
        model.objects.filter(id=delivery_id)  # type: ignore[attr-defined]
        .filter(
            Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
        )
        .update(
            status=DeliveryStatus.SENDING,
            claimed_until=now + hold,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        == 1
    )


def overdue_rows(model: type[Model], now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
    """Deliveries whose hint was evidently lost: due for ``slack_s`` already,
    or claimed by a sender whose claim expired."""
    cutoff = now - dt.timedelta(seconds=slack_s)
    return list(
        model.objects.filter(  # type: ignore[attr-defined]
            Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
            | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )


def claim(delivery_id: int, now: dt.datetime) -> bool:
    """Take the alert delivery for one attempt, atomically; False if not ours."""
    return claim_row(AlertDelivery, delivery_id, now, settings.BLAST_ALERT_TIMEOUT_S)


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
    delivery = AlertDelivery.objects.select_related("alert", "webhook").get(id=delivery_id)
    webhook: AlertWebhook = delivery.webhook
    if not webhook.enabled:
        return _record(delivery, Response(None, "", "webhook disabled"), final=True)
    alert: Alert = delivery.alert
    response = post(
        webhook.url,
        webhook.secret,
        body_of(alert),
        {"X-Blast-Alert-Id": str(alert.uid), "X-Blast-Delivery": str(delivery.pk)},
        settings.BLAST_ALERT_TIMEOUT_S,
    )
    return _record(delivery, response)


def _record(delivery: AlertDelivery, response: Response, final: bool = False) -> Outcome:
    now = timezone.now()
    fields: dict[str, Any] = {
        "last_status_code": response.status_code,
        "response_excerpt": response.excerpt,
        "error": response.error,
        "claimed_until": None,
        "updated_at": now,
    }
    retry_in: float | None = None
    name = f"webhook {delivery.webhook_id} ({delivery.webhook.name})"
    if response.ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
        logger.info(
            "📨 alert %s delivered to %s (HTTP %s, attempt %s)",
            delivery.alert.uid,
            name,
            response.status_code,
            delivery.attempts,
        )
    elif final or delivery.attempts >= settings.BLAST_ALERT_MAX_ATTEMPTS:
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        logger.warning(
            "🪦 alert %s to %s gave up after %s attempts: %s",
            delivery.alert.uid,
            name,
            delivery.attempts,
            response.detail or response.error or response.status_code,
        )
    else:
        retry_in = backoff(delivery.attempts, settings.BLAST_ALERT_RETRY_BASE_S, settings.BLAST_ALERT_RETRY_MAX_S)
        fields.update(status=DeliveryStatus.PENDING, next_attempt_at=now + dt.timedelta(seconds=retry_in))
        logger.warning(
            "📭 alert %s to %s failed (attempt %s: %s); retry in %.1fs",
            delivery.alert.uid,
            name,
            delivery.attempts,
            response.detail or response.error or response.status_code,
            retry_in,
        )
    # Conditional on our claim: a sender that took over after it expired wins.
    AlertDelivery.objects.filter(id=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts).update(
        **fields
    )
    return Outcome(fields["status"], delivery.attempts, retry_in)


def overdue(now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
    """Alert deliveries whose hint was evidently lost (see :func:`overdue_rows`)."""
    return overdue_rows(AlertDelivery, now, slack_s, limit)
