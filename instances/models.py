"""Tenants, gateways, instances, their breakers and their event log.

The database is the single source of truth for what each instance should be
doing (``desired_state``) and what it is doing (``status``); workers only
reconcile the second toward the first (ARCHITECTURE.md).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from instances import attempts, schedule, tokens
from instances.reasons import Reason

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,62}$", "Use 1-63 lowercase letters, digits or hyphens.")


class Tenant(models.Model):
    slug = models.SlugField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class TenantMembership(models.Model):
    """Ties a staff user to one tenant: in the admin and the dashboard they
    see and change only that tenant's objects (see :func:`access_of`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


# Staff in this group are the platform's operators (migration 0006 creates it).
OPERATORS_GROUP = "Platform operators"
_ACCESS_CACHE = "_blast_access"


@dataclass(frozen=True)
class Access:
    """What a user may see in the admin and the dashboard: everything their
    permissions allow (``operator``), one tenant's objects (``tenant``), or
    nothing at all (neither)."""

    operator: bool = False
    tenant: Tenant | None = None

    @property
    def nobody(self) -> bool:
        return not self.operator and self.tenant is None


NOBODY = Access()
OPERATOR = Access(operator=True)


def access_of(user: Any) -> Access:
    """Who ``user`` is to the admin and the dashboard; the one place that decides.

    - Anonymous, inactive or non-staff users: nobody.
    - Superusers: operators.
    - Staff tied to a tenant (``TenantMembership``): that tenant's staff, even
      when also in the operators group (a membership always confines).
    - Staff in the ``Platform operators`` group: operators.
    - Any other staff user: nobody. Being tied to no tenant is never a
      reason to see more.

    The answer is kept on the user object, which lives for one request (or
    one dashboard connection), like Django's permission cache.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return NOBODY
    if not getattr(user, "is_active", False) or not getattr(user, "is_staff", False):
        return NOBODY
    cached = getattr(user, _ACCESS_CACHE, None)
    if isinstance(cached, Access):
        return cached
    if user.is_superuser:
        access = OPERATOR
    else:
        membership = TenantMembership.objects.select_related("tenant").filter(user_id=user.pk).first()
        if membership is not None:
            access = Access(tenant=membership.tenant)
        elif user.groups.filter(name=OPERATORS_GROUP).exists():
            access = OPERATOR
        else:
            access = NOBODY
    setattr(user, _ACCESS_CACHE, access)
    return access


@receiver(pre_delete, sender=Tenant, dispatch_uid="instances.deactivate_tenant_staff")
def deactivate_tenant_staff(sender: type[Tenant], instance: Tenant, **kwargs: Any) -> None:
    """A deleted tenant's staff can no longer log in.

    Their memberships die with the tenant; left active, they would be staff
    tied to nothing. Django sends ``pre_delete`` inside the deletion's
    transaction, for ``Tenant.delete()`` and ``QuerySet.delete()`` alike (the
    admin uses both), so the tenant and its staff's logins go together or
    not at all.
    """
    get_user_model().objects.filter(membership__tenant=instance, is_active=True).update(is_active=False)


def validate_gateway_url(value: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValidationError("A gateway URL is ws:// or wss:// host[:port][/prefix].")
    if value.endswith("/"):
        raise ValidationError("A gateway URL has no trailing slash.")
    if parts.query or parts.fragment:
        raise ValidationError("A gateway URL has no query string or fragment.")
    try:
        _ = parts.port
    except ValueError:
        raise ValidationError("The gateway URL's port is not a valid port number.") from None


def validate_pairing_phone(value: str) -> None:
    """The phone number of an account to pair: E.164 as written (``+`` and the
    digits, nothing else) and a valid number by phonenumbers' metadata, so
    that the gateway is never asked a code for a number that cannot exist."""
    if not isinstance(value, str) or not re.fullmatch(r"\+[1-9][0-9]{7,14}", value):
        raise ValidationError("Write the number in E.164: + and the country code, digits only (+6281234567890).")
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse(value))
    except phonenumbers.NumberParseException:
        valid = False
    if not valid:
        raise ValidationError(f"{value} is not a valid phone number.")


REASON_CHOICES = [(reason.value, reason.value) for reason in Reason]


class GatewayState(models.TextChoices):
    """Whether a gateway answers at all (instances.outages has the rule)."""

    UP = "up", "Up"
    DOWN = "down", "Down"


class Gateway(models.Model):
    """A gateway that platform administrators allow tenants to use.

    Its ``state`` is written by the connection workers (instances.outages):
    ``down`` when many of its instances fail with gateway-level reasons at
    once and none is answered; while down, its instances wait and one probe at
    a time, cluster-wide, asks whether it is back.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.CharField(max_length=500, validators=[validate_gateway_url])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    state = models.CharField(max_length=8, choices=GatewayState.choices, default=GatewayState.UP, editable=False)
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    down_since = models.DateTimeField(null=True, blank=True, editable=False)
    down_reason = models.CharField(max_length=32, choices=REASON_CHOICES, blank=True, editable=False)
    last_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    probe_count = models.PositiveIntegerField(default=0, editable=False)
    outage_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        # The name alone: where a gateway lives is for operators, and tenant
        # staff see gateways in dropdowns, filters and page titles.
        return self.name


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Status(models.TextChoices):
    """The observed state of an instance's session (ARCHITECTURE.md)."""

    IDLE = "idle", "Idle"
    CONNECTING = "connecting", "Connecting"
    AWAITING_QR = "awaiting_qr", "Awaiting QR scan"
    CONNECTED = "connected", "Connected"
    DISCONNECTED = "disconnected", "Disconnected"
    BACKING_OFF = "backing_off", "Backing off"
    CIRCUIT_OPEN = "circuit_open", "Circuit open"
    STOPPED = "stopped", "Stopped"
    LOGGED_OUT = "logged_out", "Logged out"
    REPLACED = "replaced", "Replaced"
    FORBIDDEN = "forbidden", "Forbidden"
    HALTED = "halted", "Halted"  # another terminal reason: see last_reason


# Statuses in which no worker should hold or start a session on its own.
TERMINAL_STATUSES = frozenset({Status.STOPPED, Status.LOGGED_OUT, Status.REPLACED, Status.FORBIDDEN, Status.HALTED})


class PairState(models.TextChoices):
    """Where a request for a pairing code (pairing by phone number) stands."""

    NONE = "none", "None"
    REQUESTED = "requested", "Requested: waiting for the instance's worker"
    SENT = "sent", "Sent to the gateway: waiting for its answer"
    ISSUED = "issued", "Code issued: enter it on the phone"
    FAILED = "failed", "Failed: see the error"


# The optional gateway frame that pairs an account by phone number.
PAIR_CODE_FEATURE = "pair_code"


def default_send_delay_min() -> float:
    return float(settings.BLAST_SEND_DELAY_MIN_S)


def default_send_delay_max() -> float:
    return float(settings.BLAST_SEND_DELAY_MAX_S)


def default_hourly_cap() -> int:
    return int(settings.BLAST_HOURLY_CAP)


def default_daily_cap() -> int:
    return int(settings.BLAST_DAILY_CAP)


def default_warmup() -> bool:
    return bool(settings.BLAST_WARMUP_ENABLED)


def default_send_timezone() -> str:
    return str(settings.TIME_ZONE)


def every_day() -> list[str]:
    return list(schedule.DAY_NAMES)


POLICY_DEFAULTS = ("send_delay_min_s", "send_delay_max_s", "hourly_cap", "daily_cap", "warmup", "typing")
HOURS_FIELDS = ("send_hours_start", "send_hours_end", "send_timezone", "send_days")
POLICY_FIELDS = (*POLICY_DEFAULTS, *HOURS_FIELDS)


class SendingDefaults(models.Model):
    """A tenant's sending policy for its new instances. An instance created
    with a policy field left at the platform's default takes the tenant's
    value instead; a blank field here keeps the platform's setting."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="sending_defaults")
    send_delay_min_s = models.FloatField(null=True, blank=True)
    send_delay_max_s = models.FloatField(null=True, blank=True)
    hourly_cap = models.PositiveIntegerField(null=True, blank=True)
    daily_cap = models.PositiveIntegerField(null=True, blank=True)
    warmup = models.BooleanField(null=True, blank=True)
    typing = models.BooleanField(null=True, blank=True)
    send_hours_start = models.TimeField(null=True, blank=True)
    send_hours_end = models.TimeField(null=True, blank=True)
    send_timezone = models.CharField(max_length=64, blank=True)
    send_days = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "sending defaults"

    def __str__(self) -> str:
        return f"sending defaults of {self.tenant}"

    def values(self) -> dict[str, Any]:
        """The fields set here (hours count as one: both ends, or neither)."""
        found = {name: getattr(self, name) for name in POLICY_DEFAULTS if getattr(self, name) is not None}
        if self.send_hours_start is not None and self.send_hours_end is not None:
            found.update(send_hours_start=self.send_hours_start, send_hours_end=self.send_hours_end)
        if self.send_timezone:
            found["send_timezone"] = self.send_timezone
        if self.send_days:
            found["send_days"] = list(self.send_days)
        return found


def new_token() -> str:
    return secrets.token_urlsafe(32)


class InstanceQuerySet(models.QuerySet["Instance"]):
    def attempt_due(self, now: dt.datetime, horizon: dt.datetime | None = None) -> InstanceQuerySet:
        """Instances for which an attempt is due by ``horizon`` (default ``now``).

        The SQL form of ``instances.attempts.decide`` as anyone asks it (the
        row alone): exactly the rows whose decision ``due_by(horizon)`` is
        true (tests/instances/test_attempt_rule.py holds the two together).
        A live status is its owner's business and never selected; a missing
        breaker row counts as closed.
        """
        horizon = now if horizon is None else horizon
        if horizon < now:
            raise ValueError("attempt_due: the horizon must not be before now")
        breaker_allows = (
            ~Q(breaker__state=BreakerState.OPEN)
            | Q(breaker__cooldown_until__isnull=True)
            | Q(breaker__cooldown_until__lte=horizon)
        )
        retry_due = Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=horizon)
        gateway_up = ~Q(gateway__state=GatewayState.DOWN)
        scheduled = ~Q(status__in=attempts.TERMINAL) & gateway_up & breaker_allows & retry_due
        return (
            self.filter(desired_state=DesiredState.RUNNING)
            .exclude(status__in=attempts.LIVE)
            .filter(Q(force_retry=True) | scheduled)
        )


class Instance(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=100)
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    gateway = models.ForeignKey(Gateway, on_delete=models.PROTECT, related_name="instances")
    # Encrypted at rest (instances.tokens); sent to the gateway, never shown.
    token_encrypted = models.TextField(editable=False)

    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.STOPPED)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IDLE)
    status_changed_at = models.DateTimeField(default=timezone.now)
    last_reason = models.CharField(max_length=32, choices=REASON_CHOICES, blank=True)
    last_message = models.CharField(max_length=500, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # Fencing token of the last lease acquisition that wrote this row.
    lease_epoch = models.BigIntegerField(default=0)
    # Set by a force retry: one attempt now, even while the breaker is open.
    force_retry = models.BooleanField(default=False)
    owner = models.CharField("worker", max_length=200, blank=True)

    paired = models.BooleanField(default=False)
    # Unlink the account: set by the logout command, cleared by the worker
    # that sends the gateway its `logout` frame.
    logout_requested = models.BooleanField(default=False, editable=False)
    account = models.CharField(max_length=20, blank=True)
    qr_code = models.CharField(max_length=500, blank=True)
    qr_expires_at = models.DateTimeField(null=True, blank=True)
    session_id = models.CharField(max_length=100, blank=True)
    # The optional frames the gateway announced in its last hello
    # (PROTOCOL.md section 6), so that a request it cannot serve is refused
    # at once instead of being sent.
    gateway_features = models.JSONField(default=list, blank=True, editable=False)
    # Pairing by phone number: the number a code was asked for, the
    # request's progress, the code to enter on the phone and, when the
    # gateway refused, why. Cleared with the QR code when the session pairs
    # or ends.
    pair_phone = models.CharField(max_length=16, blank=True)
    pair_state = models.CharField(max_length=10, choices=PairState.choices, default=PairState.NONE)
    pair_code = models.CharField(max_length=16, blank=True)
    pair_error = models.CharField(max_length=200, blank=True)

    # Sending policy: a random delay between two sends inside [min, max],
    # at most hourly_cap and daily_cap sends (0: no cap). Defaults follow
    # common anti-ban guidance; campaigns may set their own delay.
    send_delay_min_s = models.FloatField(default=default_send_delay_min)
    send_delay_max_s = models.FloatField(default=default_send_delay_max)
    hourly_cap = models.PositiveIntegerField(default=default_hourly_cap)
    daily_cap = models.PositiveIntegerField(default=default_daily_cap)
    # Warm-up (instances.sending): a newly paired number's daily cap follows
    # BLAST_WARMUP_SCHEDULE from warmup_started_at (set when it pairs).
    warmup = models.BooleanField(default=default_warmup, help_text="New or re-paired numbers start slow.")
    warmup_started_at = models.DateTimeField(null=True, blank=True)
    # Restriction telemetry (instances.restrictions): rate-limit nacks slow
    # the instance down until slowed_until; repeated, they pause its sending
    # until paused_until.
    slowed_until = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    restriction_hits = models.JSONField(default=list, blank=True, editable=False)
    # Show the account typing for a moment before each message (protocol
    # v1.1 presence), where the gateway supports it.
    typing = models.BooleanField(default=False, help_text="Typing for 1 to 5 s before each message.")
    # Sending hours (instances.sending): messages go out only between start
    # and end, local to send_timezone; none set: at any hour.
    send_hours_start = models.TimeField(null=True, blank=True, help_text="Send from this local time (with an end).")
    send_hours_end = models.TimeField(null=True, blank=True, help_text="Until this one; before the start: overnight.")
    send_timezone = models.CharField(
        max_length=64, default=default_send_timezone, help_text="IANA time zone of the sending hours."
    )
    send_days = models.JSONField(default=every_day, help_text="Days messages go out on: mon ... sun.")

    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="instance_name_unique_per_tenant"),
        ]
        indexes = [
            # The due-retry sweep: desired running, a retry time in the past.
            models.Index(fields=["desired_state", "next_retry_at"], name="instance_due_retry"),
            models.Index(fields=["desired_state", "status"], name="instance_desired_status"),
            models.Index(fields=["tenant", "status"], name="instance_tenant_status"),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.key}]"

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        if not self.token_encrypted:
            self.token_encrypted = tokens.encrypt(new_token())
        if adding:
            self.take_tenant_defaults()
        super().save(*args, **kwargs)
        if adding:
            CircuitBreaker.objects.get_or_create(instance=self)

    def take_tenant_defaults(self) -> None:
        """Policy fields still at the platform's default take the tenant's
        :class:`SendingDefaults`; fields the creator set stay as set."""
        defaults = SendingDefaults.objects.filter(tenant_id=self.tenant_id).first()
        if defaults is None:
            return
        for name, value in defaults.values().items():
            field = self._meta.get_field(name)
            if getattr(self, name) == field.get_default():
                setattr(self, name, value)

    @property
    def token(self) -> str:
        """The decrypted per-instance secret sent to the gateway."""
        return tokens.decrypt(self.token_encrypted)

    def rotate_token(self) -> None:
        self.token_encrypted = tokens.encrypt(new_token())

    @property
    def socket_url(self) -> str:
        return f"{self.gateway.url}/v1/instances/{self.key}/socket"


tokens.register(Instance, "token_encrypted")


class BreakerState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half_open", "Half-open"


class CircuitBreaker(models.Model):
    """The persisted state of one instance's breaker (instances.breaker)."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="breaker")
    state = models.CharField(max_length=10, choices=BreakerState.choices, default=BreakerState.CLOSED)
    # Epoch seconds of the failures still inside the sliding window.
    failures = models.JSONField(default=list, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    cooldown_until = models.DateTimeField(null=True, blank=True)
    trip_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["state", "cooldown_until"], name="breaker_cooldown_due")]

    def __str__(self) -> str:
        return f"breaker of {self.instance_id}: {self.state}"


class EventKind(models.TextChoices):
    ATTEMPT = "attempt", "Connection attempt"
    QR = "qr", "QR code issued"
    PAIRED = "paired", "Paired"
    READY = "ready", "Ready"
    DISCONNECT = "disconnect", "Disconnected"
    RETRY_SCHEDULED = "retry_scheduled", "Retry scheduled"
    BREAKER_OPENED = "breaker_opened", "Breaker opened"
    BREAKER_HALF_OPEN = "breaker_half_open", "Breaker half-open"
    BREAKER_CLOSED = "breaker_closed", "Breaker closed"
    CONNECT = "connect", "Connect requested"
    DISCONNECT_REQUESTED = "disconnect_requested", "Disconnect requested"
    FORCE_RETRY = "force_retry", "Force retry"
    RESET_BREAKER = "reset_breaker", "Breaker reset"
    LOST = "lost", "Session lost with its worker"
    MALFORMED = "malformed", "Malformed frame"
    PAIR_CODE_REQUESTED = "pair_code_requested", "Pairing code requested"
    PAIR_CODE = "pair_code", "Pairing code issued"
    PAIR_CODE_FAILED = "pair_code_failed", "Pairing code failed"
    LOGOUT_REQUESTED = "logout_requested", "Logout requested"
    SLOWED = "slowed", "Slowed down: the network limits the account"
    RESTRICTED = "restricted", "Sending paused: repeated limits from the network"
    RESTRICTION_LIFTED = "restriction_lifted", "Sending resumed after a pause for limits"


class AppendOnly(models.Model):
    """A log row: written once, never changed."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError(f"{str(self._meta.verbose_name_plural).capitalize()} are append-only")
        super().save(*args, **kwargs)


class ConnectionEvent(AppendOnly):
    """Append-only log of what happened to an instance's session."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=24, choices=EventKind.choices)
    reason = models.CharField(max_length=32, choices=REASON_CHOICES, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=200, blank=True, help_text="Who did it: a user, an API key, a worker or beat.")
    epoch = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["instance", "-at"], name="event_instance_recent")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} {self.reason}".strip()


class GatewayEventKind(models.TextChoices):
    DOWN = "down", "Gateway down"
    UP = "up", "Gateway up"
    PROBE_REQUESTED = "probe_requested", "Probe requested"


class GatewayEvent(AppendOnly):
    """Append-only log of a gateway's transitions and of what operators asked of it."""

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=24, choices=GatewayEventKind.choices)
    reason = models.CharField(max_length=32, choices=REASON_CHOICES, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=200, blank=True, help_text="Who did it: a user, an API key or a worker.")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["gateway", "-at"], name="gateway_event_recent")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} {self.reason}".strip()


class WorkerHeartbeat(models.Model):
    """One row per connection worker process, refreshed while it runs."""

    worker_id = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    sessions_held = models.PositiveIntegerField(default=0)
    # The most sessions it will hold (BLAST_WORKER_CAPACITY): its share follows it.
    capacity = models.PositiveIntegerField(default=0)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.worker_id
