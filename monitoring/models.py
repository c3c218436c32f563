"""Health snapshots, alert webhooks, alerts, their deliveries and the
alert evaluator's memory (last known states and its event cursor)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from instances import tokens
from instances.models import Instance, Tenant
from monitoring.outbound import validate_public_url

validate_webhook_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


class HealthSnapshot(models.Model):
    """The platform's (``tenant`` null) or one tenant's health at one minute."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="health_snapshots")
    score = models.PositiveSmallIntegerField()
    # pass / warn / fail of /health; empty for a tenant's snapshot.
    status = models.CharField(max_length=4, blank=True)
    total = models.PositiveIntegerField(default=0)
    expected = models.PositiveIntegerField(default=0)
    connected = models.PositiveIntegerField(default=0)
    open_breakers = models.PositiveIntegerField(default=0)
    by_status = models.JSONField(default=dict, blank=True)
    live_workers = models.PositiveIntegerField(null=True, blank=True)
    sessions_held = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["tenant", "at"], name="snapshot_tenant_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} score {self.score}"


class AlertWebhook(models.Model):
    """Where alerts are posted: platform-wide (``tenant`` null: every alert) or
    one tenant's (alerts about that tenant's instances only)."""

    name = models.CharField(max_length=100)
    # Checked again on every delivery: the host's addresses at that moment.
    url = models.CharField(
        "URL",
        max_length=500,
        validators=[validate_webhook_url, validate_public_url],
        help_text="http:// or https://, on a public address.",
    )
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_webhooks",
        help_text="Empty: platform-wide, receives every alert.",
    )
    # Fernet-encrypted (instances.tokens); used to sign bodies, never shown again.
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant or 'platform'})"

    @property
    def secret(self) -> str:
        """The decrypted signing secret."""
        return tokens.decrypt(self.secret_encrypted)

    def set_secret(self, secret: str | None = None) -> str:
        """Store ``secret`` (a new random one when None) encrypted; return it."""
        secret = secret or new_secret()
        self.secret_encrypted = tokens.encrypt(secret)
        return secret

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.secret_encrypted:
            self.set_secret()
        super().save(*args, **kwargs)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


tokens.register(AlertWebhook, "secret_encrypted")


class AlertKind(models.TextChoices):
    """The condition an alert is about; each fires once and resolves once."""

    BREAKER_OPEN = "breaker_open", "Breaker open"
    LOGGED_OUT = "logged_out", "Logged out"
    REPLACED = "replaced", "Replaced"
    FORBIDDEN = "forbidden", "Forbidden"
    CLIENT_OUTDATED = "client_outdated", "Client outdated"
    UNAUTHORIZED = "unauthorized", "Unauthorized"
    NOT_FOUND = "not_found", "Unknown to the gateway"
    MULTIDEVICE_MISMATCH = "multidevice_mismatch", "Multi-device mismatch"
    SCORE_LOW = "score_low", "Health score low"
    NO_LIVE_WORKER = "no_live_worker", "No live connection worker"
    BEAT_STALLED = "beat_stalled", "Recovery jobs stalled"
    PLATFORM_DOWN = "platform_down", "Platform not answering"
    PLATFORM_STATUS = "platform_status", "Platform health status"
    GATEWAY_DOWN = "gateway_down", "Gateway down"
    GATEWAY_UP = "gateway_up", "Gateway up again"
    TEMPORARILY_BANNED = "temporarily_banned", "Temporarily banned by the network"
    RESTRICTED = "restricted", "Sending paused: the network is limiting the account"
    CAMPAIGN_LOW_REPLIES = "campaign_low_replies", "Campaign paused: too few replies"


class AlertStatus(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class Alert(models.Model):
    """One transition of a condition: it started firing, or it resolved."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    status = models.CharField(max_length=8, choices=AlertStatus.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    summary = models.CharField(max_length=300)
    data = models.JSONField(default=dict, blank=True)
    # The connection event that caused it (instance alerts), for tracing.
    source_event_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}: {self.summary}"


class DeliveryStatus(models.TextChoices):
    """A webhook delivery's status, alert (:class:`AlertDelivery`) or tenant
    (``campaigns.models.WebhookDelivery``): both are posted by
    :mod:`monitoring.delivery`."""

    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class AlertDelivery(models.Model):
    """One alert to one webhook: every attempt updates this row."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(AlertWebhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # While an attempt is in flight: another sender may take over after this.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "webhook"], name="delivery_once_per_webhook")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        verbose_name_plural = "alert deliveries"

    def __str__(self) -> str:
        return f"{self.alert_id} -> {self.webhook_id}: {self.status}"


class AlertState(models.Model):
    """The alert evaluator's memory: the last known state of each condition
    (``platform:score``, ``instance:42:breaker_open``, ...) and its event
    cursor (``events:cursor``). Alerts fire only when a state changes."""

    key = models.CharField(max_length=100, unique=True)
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=32, blank=True)
    since = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.key}={self.state}"


class EventTally(models.Model):
    """Connection events counted so far, by kind and reason, including those
    since pruned: the base of the ``blast_*_total`` counters, so that pruning
    old events never makes a counter go down."""

    kind = models.CharField(max_length=24)
    reason = models.CharField(max_length=32, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "reason"], name="tally_kind_reason")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.reason}: {self.count}"
