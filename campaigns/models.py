"""Messages, and the campaigns that expand into them.

A message is a database row before the API answers 202; the worker that owns
its instance sends it while the session is ready and records the outcome.
Its protocol client id is the row's own stable public id, so that a resend
after a drop is deduplicated by the gateway and delivered once.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from instances.models import Instance, Tenant


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class Campaign(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="campaigns")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    # Pacing of this campaign's sends on each instance (random delay between
    # two sends, inside [min, max]); None falls back to the instance's own.
    send_delay_min_s = models.FloatField(null=True, blank=True)
    send_delay_max_s = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"


# Progress only moves forward: a late `delivered` never undoes a `read`.
STATUS_RANK = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.FAILED: 4,
}
TERMINAL_MESSAGE_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)


class FailureReason(models.TextChoices):
    NACK_PERMANENT = "nack_permanent", "Refused by the network"
    INVALID_RECIPIENT = "invalid_recipient", "Invalid recipient"
    EXPIRED = "expired", "Expired before it could be sent"
    OPTED_OUT = "opted_out", "Recipient opted out"
    QUOTA_EXCEEDED = "quota_exceeded", "Monthly quota exceeded"
    INSTANCE_STOPPED = "instance_stopped", "Instance stopped for good"


class Message(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="messages")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="messages")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    to = models.CharField(max_length=20, help_text="E.164")
    text = models.TextField(max_length=4096)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    failure_reason = models.CharField(max_length=24, choices=FailureReason.choices, blank=True)
    error = models.CharField(max_length=500, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    server_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="send frames written to a gateway")
    not_before = models.DateTimeField(null=True, blank=True, help_text="not sent before this time")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="message_idempotency_key_unique_per_tenant",
            ),
        ]
        indexes = [
            # The worker's polling query: an instance's queued messages in order.
            models.Index(fields=["instance", "status", "id"], name="message_instance_queue"),
            models.Index(fields=["status", "instance"], name="message_status_instance"),
            models.Index(fields=["tenant", "-created_at"], name="message_tenant_recent"),
            models.Index(fields=["campaign", "status"], name="message_campaign_status"),
        ]

    def __str__(self) -> str:
        return f"{self.key} to {self.to}: {self.status}"

    @property
    def client_id(self) -> str:
        """The protocol's client message id: stable, 32 chars of [0-9a-f]."""
        return self.key.hex


class MessageEvent(models.Model):
    """Append-only log of message status changes, written with each change.

    Status webhooks and campaign reports read it by increasing id, so that
    none is missed and none is sent twice."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=12, choices=MessageStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["campaign", "status"], name="message_event_campaign")]

    def __str__(self) -> str:
        return f"{self.message_id} {self.status}"
