"""Webhook deliveries: claim, sign, send, record, back off, give up.

One engine posts both kinds of webhook the platform sends: alerts
(:class:`monitoring.models.AlertDelivery`, :data:`ALERTS` below) and the
tenants' status webhooks (:class:`campaigns.models.WebhookDelivery`,
``campaigns.webhooks.DELIVERIES``). A :class:`Deliveries` names what differs
between them: the delivery model, the policy (attempts, backoff, timeout,
read from the settings at call time), the body and the headers of a row.

A delivery is a database row first; a Celery task (``monitoring.deliver_alert``,
``campaigns.deliver_webhook``) is only a hint to try it now. Each attempt:

1. claims the row with one conditional UPDATE (pending and due, or sending
   with an expired claim) so that two senders never post it at once;
2. posts the body, signed (:mod:`monitoring.signing`), with a timeout,
   following no redirect, to public addresses only: the URL is a user's, so
   :mod:`monitoring.outbound` checks it and every address its host resolves
   to, and connects to the addresses it checked;
3. records the outcome, conditional on its claim: a 2xx is ``delivered``;
   anything else (another status, a timeout, a refused connection, a
   disabled webhook) goes back to ``pending`` with ``next_attempt_at`` after
   an exponential backoff (:func:`backoff`), until the policy's most attempts
   have failed (``failed``; a disabled webhook fails at once).

A lost hint delays a delivery, it never loses it: the beat jobs sweep the
deliveries that are overdue (:meth:`Deliveries.overdue`). Delivery is at
least once: a sender that dies after posting and before recording is retried
after its claim expires, so receivers de-duplicate (on ``X-Blast-Alert-Id``,
on each status event's id). Webhook URLs and secrets are never logged: a URL
can carry a credential.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F, Model, Q
from django.utils import timezone

from monitoring import outbound, signing
from monitoring.models import Alert, AlertDelivery, DeliveryStatus
from monitoring.outbound import Response

logger = logging.getLogger("blast.monitoring")

USER_AGENT = "Blast-Alerts/1"
# The model's ``response_excerpt`` and ``error`` columns hold this many characters.
TEXT_MAX = 500


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based):
    ``base * 2^(attempt-1)``, at most ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, attempt - 1)))


def post(url: str, secret: str, body: bytes, extra_headers: dict[str, str], timeout: float) -> Response:
    """POST ``body`` signed with ``secret`` to a user-given ``url`` under the
    address policy of :func:`monitoring.outbound.post` (a 3xx is a failed
    delivery, never a POST elsewhere); never raises for a network error.
    ``extra_headers`` may replace the alerts' ``User-Agent``."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signing.headers(secret, int(time.time()), body),
        **extra_headers,
    }
    return outbound.post(url, body, headers, timeout)


@dataclass(frozen=True)
class Policy:
    """How hard one kind of delivery tries."""

    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    timeout_s: float


@dataclass(frozen=True)
class Outcome:
    """What one attempt left: the row's status, its attempts so far, and the
    seconds until the retry (None unless ``pending``)."""

    status: str
    attempts: int
    retry_in: float | None = None


@dataclass(frozen=True)
class Deliveries:
    """One kind of delivery, and the engine that attempts it.

    ``model`` has the fields of :class:`monitoring.models.AlertDelivery`
    (``status``, ``attempts``, ``next_attempt_at``, ``claimed_until``,
    ``last_status_code``, ``response_excerpt``, ``error``, ``updated_at``,
    ``delivered_at``) and a ``webhook`` with ``url``, ``secret`` and
    ``enabled``. ``policy`` is called on every attempt, so that settings
    changed at run time (tests, ``override_settings``) apply. ``headers``
    adds to the signed POST's headers; ``subject`` and ``target`` name a row
    and its webhook in the log (never by URL).
    """

    model: type[Model]
    policy: Callable[[], Policy]
    body: Callable[[Any], bytes]
    headers: Callable[[Any], dict[str, str]]
    subject: Callable[[Any], str]
    target: Callable[[Any], str]
    # Loaded with the row for body, headers, subject and target (``webhook`` always is).
    related: tuple[str, ...] = ()

    def claim(self, delivery_id: int, now: dt.datetime) -> bool:
        """Take the row for one attempt, atomically: due and pending, or
        claimed by a sender whose claim expired. False when it is not ours."""
        hold = dt.timedelta(seconds=self.policy().timeout_s * 2 + 30)
        return bool(
            self.model.objects.filter(id=delivery_id)
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

    def attempt(self, delivery_id: int, now: dt.datetime | None = None) -> Outcome | None:
        """Try one delivery now; None when it is not due or another sender has it."""
        now = now or timezone.now()
        if not self.claim(delivery_id, now):
            return None
        row = self.model.objects.select_related("webhook", *self.related).get(id=delivery_id)
        policy = self.policy()
        if not row.webhook.enabled:
            return self._record(row, Response(None, "", "webhook disabled"), policy, final=True)
        # Checks the URL and every resolved address, then connects to those.
        response = post(row.webhook.url, row.webhook.secret, self.body(row), self.headers(row), policy.timeout_s)
        return self._record(row, response, policy)

    def _record(self, row: Any, response: Response, policy: Policy, final: bool = False) -> Outcome:
        now = timezone.now()
        fields: dict[str, Any] = {
            "last_status_code": response.status_code,
            "response_excerpt": response.excerpt[:TEXT_MAX],
            "error": response.error[:TEXT_MAX],
            "claimed_until": None,
            "updated_at": now,
        }
        retry_in: float | None = None
        subject, target, attempts = self.subject(row), self.target(row), row.attempts
        why = response.detail or response.error or response.status_code
        if response.ok:
            fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
            logger.info("📨 %s delivered to %s (HTTP %s, attempt %s)", subject, target, response.status_code, attempts)
        elif final or attempts >= policy.max_attempts:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
            logger.warning("🪦 %s to %s gave up after %s attempts: %s", subject, target, attempts, why)
        else:
            retry_in = backoff(attempts, policy.retry_base_s, policy.retry_max_s)
            fields.update(status=DeliveryStatus.PENDING, next_attempt_at=now + dt.timedelta(seconds=retry_in))
            logger.warning(
                "📭 %s to %s failed (attempt %s: %s); retry in %.1fs", subject, target, attempts, why, retry_in
            )
        # Conditional on our claim: a sender that took over after it expired wins.
        self.model.objects.filter(id=row.pk, status=DeliveryStatus.SENDING, attempts=attempts).update(**fields)
        return Outcome(fields["status"], attempts, retry_in)

    def overdue(self, now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
        """Deliveries whose hint was evidently lost: due for ``slack_s``
        already, or claimed by a sender whose claim expired."""
        cutoff = now - dt.timedelta(seconds=slack_s)
        return list(
            self.model.objects.filter(
                Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
                | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
            )
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )


# -- alert deliveries ----------------------------------------------------------------


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


def _alert_body(row: AlertDelivery) -> bytes:
    return json.dumps(payload(row.alert), separators=(",", ":"), sort_keys=True).encode()


def _alert_policy() -> Policy:
    return Policy(
        max_attempts=settings.BLAST_ALERT_MAX_ATTEMPTS,
        retry_base_s=settings.BLAST_ALERT_RETRY_BASE_S,
        retry_max_s=settings.BLAST_ALERT_RETRY_MAX_S,
        timeout_s=settings.BLAST_ALERT_TIMEOUT_S,
    )


ALERTS = Deliveries(
    model=AlertDelivery,
    policy=_alert_policy,
    body=_alert_body,
    headers=lambda row: {"X-Blast-Alert-Id": str(row.alert.uid), "X-Blast-Delivery": str(row.pk)},
    subject=lambda row: f"alert {row.alert.uid}",
    target=lambda row: f"webhook {row.webhook_id} ({row.webhook.name})",
    related=("alert",),
)


def attempt(delivery_id: int, now: dt.datetime | None = None) -> Outcome | None:
    """Try one alert delivery now (:meth:`Deliveries.attempt`)."""
    return ALERTS.attempt(delivery_id, now)


def overdue(now: dt.datetime, slack_s: float, limit: int = 500) -> list[int]:
    """Alert deliveries whose hint was evidently lost (:meth:`Deliveries.overdue`)."""
    return ALERTS.overdue(now, slack_s, limit)
