"""Messages, the campaigns that expand into them, contact lists, opt-outs,
monthly quotas and the tenants' status webhooks.

A message is a database row before the API answers 202; the worker that owns
its instance sends it while the session is ready and records the outcome.
Its protocol client id is the row's own stable public id, so that a resend
after a drop is deduplicated by the gateway and delivered once.

A campaign is a template and a contact list, sent through one or several of
the tenant's instances. It expands into message rows (one per contact, at
most: a unique constraint on ``(campaign, contact)``) in chunks; its
lifecycle is ``campaigns.lifecycle``. Queued messages the worker must not
send yet carry a ``not_before`` in the future: the next allowed-hours window,
a nack's retry time, or :data:`HOLD` while their campaign is paused.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from instances import tokens
from instances.models import Instance, Tenant
from monitoring.models import DeliveryStatus
from monitoring.outbound import validate_public_url

# ``not_before`` of the queued messages of a paused campaign: never due until
# the campaign resumes and releases them (campaigns.lifecycle).
HOLD = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def default_campaign_delay_min() -> float:
    return float(settings.BLAST_CAMPAIGN_DELAY_MIN_S)


def default_campaign_delay_max() -> float:
    return float(settings.BLAST_CAMPAIGN_DELAY_MAX_S)


class ContactList(models.Model):
    """A tenant's named list of recipients, filled by CSV uploads.

    ``fields`` names the custom columns seen so far (in order of first
    appearance); a campaign's template may use them, and ``phone``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contact_lists")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    fields = models.JSONField(default=list, blank=True, help_text="Custom field names, from the CSV headers.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="contact_list_name_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """One recipient of a list: a normalised E.164 number (unique in the
    list: uploads merge duplicates) and its custom fields. The API names it
    by ``key``, its public id; the integer ``id`` stays internal (upload
    order, the expansion's cursor)."""

    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="contacts")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    phone = models.CharField(max_length=20, help_text="E.164")
    fields = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["contact_list", "phone"], name="contact_phone_unique_per_list")]

    def __str__(self) -> str:
        return self.phone


class RotationMode(models.TextChoices):
    """How a campaign spreads its contacts over its instances (campaigns.expansion)."""

    ROUND_ROBIN = "round_robin", "Round-robin"
    LEAST_LOADED = "least_loaded", "Least loaded"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class PauseReason(models.TextChoices):
    MANUAL = "manual", "Paused by the tenant"
    NO_CONNECTED_INSTANCE = "no_connected_instance", "None of its instances is connected"
    QUOTA_EXCEEDED = "quota_exceeded", "Monthly quota exhausted"
    LOW_REPLY_RATE = "low_reply_rate", "Too few recipients replied"


class Campaign(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="campaigns")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    template = models.TextField(
        max_length=20_000, blank=True, help_text="{{field}} variables and {Hi|Hello} spintax (campaigns.templating)."
    )
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns"
    )
    instances = models.ManyToManyField(Instance, blank=True, related_name="campaigns")
    rotation = models.CharField(max_length=16, choices=RotationMode.choices, default=RotationMode.ROUND_ROBIN)
    start_at = models.DateTimeField(null=True, blank=True, help_text="Empty: as soon as it is started.")
    # Allowed hours: sends only between allowed_start and allowed_end (local
    # time in `timezone`; end before start spans midnight) on the allowed
    # weekdays (0 = Monday; empty: every day). No start/end: at any hour.
    time_zone = models.CharField("timezone", max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Paris.")
    allowed_start = models.TimeField(null=True, blank=True)
    allowed_end = models.TimeField(null=True, blank=True)
    allowed_weekdays = models.JSONField(default=list, blank=True)
    # Pacing of this campaign's sends on each instance (random delay between
    # two sends, inside [min, max]); None falls back to the instance's own.
    send_delay_min_s = models.FloatField(null=True, blank=True, default=default_campaign_delay_min)
    send_delay_max_s = models.FloatField(null=True, blank=True, default=default_campaign_delay_max)
    # Every message carries this file, the template being its caption.
    media = models.ForeignKey("media.Media", on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns")
    # Ask the gateway which recipients are on the network before writing
    # their messages; those that are not are skipped (campaigns.expansion).
    check_numbers = models.BooleanField(default=False, help_text="Skip recipients a number check finds absent.")
    # Messages still queued on a stopped instance fail with instance_stopped
    # after this time (campaigns.reroute); empty: BLAST_CAMPAIGN_STRANDED_FAIL_H
    # after the instance stopped.
    deadline = models.DateTimeField(null=True, blank=True, help_text="Give up on stranded messages after this time.")
    # Reply-ratio guard (campaigns.guard): once reply_guard_after messages are
    # sent, a share of recipients who replied below reply_guard_percent pauses
    # the campaign, once; empty: off.
    reply_guard_percent = models.FloatField(null=True, blank=True, help_text="Pause below this reply rate (%).")
    reply_guard_after = models.PositiveIntegerField(default=200, help_text="Judged after this many sends.")
    reply_guard_tripped_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Lifecycle (campaigns.lifecycle).
    pause_reason = models.CharField(max_length=24, choices=PauseReason.choices, blank=True)
    status_message = models.CharField(max_length=300, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Expansion (campaigns.expansion): contacts up to this id are expanded.
    expansion_cursor = models.BigIntegerField(default=0)
    expanded_count = models.PositiveIntegerField(default=0)
    expansion_progress_at = models.DateTimeField(null=True, blank=True)
    expanded_at = models.DateTimeField(null=True, blank=True, help_text="Every contact has its message.")
    # Allowed hours: the window is closed until this time (queued messages
    # carry it as not_before); the beat job wakes the instances then.
    window_opens_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "start_at"], name="campaign_status_start")]

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
    CANCELLED = "cancelled", "Campaign cancelled before it was sent"
    INVALID_TEXT = "invalid_text", "The template rendered an empty or too long text"
    MEDIA_UNSUPPORTED = "media_unsupported", "The instance's gateway does not send media"
    NOT_ON_NETWORK = "not_on_network", "Skipped: a number check found it not on WhatsApp"


# Reasons of messages that were never tried: the campaign report counts them
# as skipped.
SKIP_REASONS = (FailureReason.OPTED_OUT, FailureReason.NOT_ON_NETWORK)


class Message(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="messages")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="messages")
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    to = models.CharField(max_length=20, help_text="E.164")
    text = models.TextField(max_length=4096, blank=True, help_text="the text, or the caption of the media")
    media = models.ForeignKey("media.Media", on_delete=models.PROTECT, null=True, blank=True, related_name="messages")
    # The campaign instance it was dealt to first, when it moved off it
    # because that instance stopped (campaigns.reroute).
    moved_from = models.ForeignKey(
        Instance, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    failure_reason = models.CharField(max_length=24, choices=FailureReason.choices, blank=True)
    error = models.CharField(max_length=500, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    server_id = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="send frames written to a gateway")
    # A transient nack says the gateway did not send that write: a message
    # with as many nacks as attempts was never sent (campaigns.reroute).
    nacks = models.PositiveIntegerField(default=0, help_text="writes a gateway refused for now (transient nacks)")
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
            # Expansion is idempotent: one message per contact per campaign.
            models.UniqueConstraint(
                fields=["campaign", "contact"],
                condition=Q(contact__isnull=False),
                name="message_once_per_campaign_contact",
            ),
        ]
        indexes = [
            # The worker's polling query: an instance's queued messages in order.
            models.Index(fields=["instance", "status", "id"], name="message_instance_queue"),
            models.Index(fields=["status", "instance"], name="message_status_instance"),
            models.Index(fields=["tenant", "-created_at"], name="message_tenant_recent"),
            models.Index(fields=["campaign", "status"], name="message_campaign_status"),
            # What an inbound message replies to: the recipient's last message from the instance.
            models.Index(fields=["to", "instance"], name="message_recipient"),
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


# --- opt-outs, inbound messages, quotas ---------------------------------------------


class OptOutSource(models.TextChoices):
    INBOUND = "inbound", "Recipient replied with a stop keyword"
    API = "api", "Added through the API"
    ADMIN = "admin", "Added in the admin"


class OptOut(models.Model):
    """A number the tenant never sends to again (campaigns.optouts)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="opt_outs")
    phone = models.CharField(max_length=20, help_text="E.164")
    source = models.CharField(max_length=8, choices=OptOutSource.choices, default=OptOutSource.API)
    instance = models.ForeignKey(
        Instance,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Where the stop came in.",
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "opt-out"
        constraints = [models.UniqueConstraint(fields=["tenant", "phone"], name="opt_out_unique_per_tenant")]

    def __str__(self) -> str:
        return self.phone


class InboundAction(models.TextChoices):
    NONE = "", "None"
    OPT_OUT = "opt_out", "Opted out"
    OPT_IN = "opt_in", "Opted in again"


class InboundMessage(models.Model):
    """A message an instance's account received (``inbound`` frames); stored
    once per ``(instance, server_id)``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="inbound_messages")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="inbound_messages")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    server_id = models.CharField(max_length=100)
    sender = models.CharField(max_length=20)
    text = models.TextField(max_length=4096, blank=True)
    action = models.CharField(max_length=8, choices=InboundAction.choices, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    # The last message this instance sent to the sender before, within the
    # reply window (BLAST_REPLY_WINDOW_H): what this is a reply to.
    in_reply_to = models.ForeignKey("Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies")
    campaign = models.ForeignKey(Campaign, on_delete=models.SET_NULL, null=True, blank=True, related_name="replies")
    # What an auto-reply rule answered (campaigns.autoreplies).
    auto_reply = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="auto_replied"
    )
    auto_reply_rule = models.ForeignKey(
        "AutoReplyRule", on_delete=models.SET_NULL, null=True, blank=True, related_name="inbound_messages"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["instance", "sender", "-received_at"], name="inbound_conversation")]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "server_id"], condition=~Q(server_id=""), name="inbound_once_per_server_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.sender}: {self.text[:40]}"


class TenantQuota(models.Model):
    """A tenant's monthly message quota; tenants without a row (or with an
    empty limit) get ``BLAST_TENANT_MONTHLY_QUOTA`` (0: unlimited). The row is
    also the lock that serialises a tenant's quota checks (campaigns.quota)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="quota")
    monthly_messages = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages per calendar month (UTC). Empty: the platform default; 0: unlimited."
    )

    def __str__(self) -> str:
        return f"quota of {self.tenant}: {self.monthly_messages}"


# --- status webhooks ------------------------------------------------------------------

validate_webhook_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


class TenantWebhook(models.Model):
    """Where a tenant receives message status changes and instance events
    (campaigns.webhooks): all its instances', or one instance's only."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="status_webhooks")
    instance = models.ForeignKey(
        Instance,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="status_webhooks",
        help_text="Empty: every instance of the tenant.",
    )
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    # Checked again on every delivery: the host's addresses at that moment.
    url = models.CharField("URL", max_length=500, validators=[validate_webhook_url, validate_public_url])
    message_events = models.BooleanField(default=True, help_text="Message status changes.")
    instance_events = models.BooleanField(default=True, help_text="Connection events of instances.")
    inbound_events = models.BooleanField(default=True, help_text="Messages the instances received.")
    # Fernet-encrypted (instances.tokens); signs bodies, shown once.
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant})"

    @property
    def secret(self) -> str:
        """The decrypted signing secret."""
        return tokens.decrypt(self.secret_encrypted)

    def set_secret(self, secret: str | None = None) -> str:
        """Store ``secret`` (a new random one when None) encrypted; return it."""
        secret = secret or secrets.token_urlsafe(32)
        self.secret_encrypted = tokens.encrypt(secret)
        return secret

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.secret_encrypted:
            self.set_secret()
        super().save(*args, **kwargs)


tokens.register(TenantWebhook, "secret_encrypted")


class WebhookDelivery(models.Model):
    """One POST of a batch of events to one webhook; every attempt updates
    this row. The body is fixed when the row is created, so that a retry
    sends the same events (receivers de-duplicate on each event's id)."""

    webhook = models.ForeignKey(TenantWebhook, on_delete=models.CASCADE, related_name="deliveries")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField(default=dict)
    event_count = models.PositiveIntegerField(default=0)
    # The alert deliveries' enum: monitoring.delivery posts both kinds.
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["webhook", "-created_at"], name="webhook_delivery_recent"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.uid} -> {self.webhook_id}: {self.status}"


class FeedCursor(models.Model):
    """Where the webhook fan-out is in an append-only event log
    (``message_events``, ``connection_events``): a
    :class:`monitoring.transitions.Cursor` as JSON."""

    key = models.CharField(max_length=50, unique=True)
    data = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class NumberCheckStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class NumberCheck(models.Model):
    """A tenant's question to one instance's gateway: which of these numbers
    are on the network (protocol v1.1 ``check``, 50 at a time)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="number_checks")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="number_checks")
    # Set when a campaign's expansion asked (Campaign.check_numbers): its
    # answer lets the expansion go on.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="number_checks"
    )
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    phones = models.JSONField(default=list, help_text="E.164 numbers asked, in order")
    results = models.JSONField(default=dict, help_text="number -> on the network, as answered so far")
    status = models.CharField(max_length=8, choices=NumberCheckStatus.choices, default=NumberCheckStatus.PENDING)
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["instance", "status", "id"], name="number_check_queue")]

    def __str__(self) -> str:
        return f"{len(self.phones)} numbers: {self.status}"


class KnownNumber(models.Model):
    """What a check answered for a number, kept per tenant for
    ``BLAST_NUMBER_CHECK_CACHE_H`` hours."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="known_numbers")
    phone = models.CharField(max_length=20)
    on_network = models.BooleanField()
    checked_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "phone"], name="known_number_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.phone}: {'on' if self.on_network else 'not on'} the network"


# --- auto-replies ---------------------------------------------------------------------


class ReplyMatch(models.TextChoices):
    EXACT = "exact", "The whole message is the pattern"
    CONTAINS = "contains", "The message contains the pattern"
    REGEX = "regex", "The pattern, a regular expression, matches"


def default_auto_reply_cooldown() -> int:
    return int(settings.BLAST_AUTO_REPLY_COOLDOWN_S)


class AutoReplyRule(models.Model):
    """An instance's automatic answer to inbound messages that match a
    pattern (campaigns.autoreplies); case is ignored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="auto_reply_rules")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="auto_reply_rules")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    match = models.CharField(max_length=8, choices=ReplyMatch.choices, default=ReplyMatch.CONTAINS)
    pattern = models.CharField(max_length=500)
    reply_text = models.TextField(max_length=4096, blank=True, help_text="The reply, or the caption of its media.")
    reply_media = models.ForeignKey(
        "media.Media", on_delete=models.PROTECT, null=True, blank=True, related_name="auto_reply_rules"
    )
    cooldown_s = models.PositiveIntegerField(
        "cool-down (seconds)",
        default=default_auto_reply_cooldown,
        help_text="After an automatic reply to a contact, this instance sends that contact none for this long.",
    )
    priority = models.PositiveIntegerField(default=100, help_text="Rules are tried in this order, lowest first.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["priority", "id"]
        indexes = [models.Index(fields=["instance", "enabled", "priority"], name="auto_reply_rules_of_instance")]

    def __str__(self) -> str:
        return self.name


class AutoReplyContact(models.Model):
    """When an instance last answered a contact automatically: the cool-down
    that keeps two bots from answering each other for ever."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    phone = models.CharField(max_length=20)
    last_reply_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "phone"], name="auto_reply_once_per_contact")]

    def __str__(self) -> str:
        return f"{self.phone} at {self.last_reply_at:%Y-%m-%d %H:%M}"
