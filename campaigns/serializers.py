"""JSON shapes of the messages, contact lists, campaigns, opt-outs and
webhooks API, and the validation of what clients send.

As in the instances API (api.serializers): every error is field-level with
a message for a person; keys a client may not write, or that do not exist,
are refused by name; public ids are UUIDs. Objects that belong to another
tenant are treated exactly like objects that do not exist.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import StrictCharField, StrictSerializerMixin, validate_display_name
from campaigns import phones, schedule, webhooks
from campaigns.models import (
    HOLD,
    Campaign,
    CampaignStatus,
    Contact,
    ContactList,
    DeliveryStatus,
    FailureReason,
    Message,
    MessageStatus,
    OptOut,
    OptOutSource,
    PauseReason,
    RotationMode,
    TenantWebhook,
    WebhookDelivery,
    validate_webhook_url,
)
from campaigns.templating import NAME, TemplateError
from campaigns.templating import parse as parse_template
from instances.models import Instance

MAX_TEXT = 4096
MAX_DELAY_S = 86_400.0
MAX_FIELD_VALUE = 1000
MAX_CONTACT_FIELDS = 50


def _scoped(context: dict[str, Any]) -> Any:
    return context["tenant"]


def parse_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


class PhoneField(StrictCharField):
    """A phone number written by a person, stored as E.164."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", phones.MAX_INPUT)
        kwargs.setdefault("help_text", "E.164 (+5511999999999); other forms are normalised to it.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return phones.normalise(text, settings_region())
        except phones.InvalidPhone as exc:
            raise serializers.ValidationError(str(exc)) from None


def settings_region() -> str | None:
    from campaigns import conf

    return conf.get("BLAST_DEFAULT_REGION") or None


@extend_schema_field({"type": "string", "format": "uuid"})
class TenantObjectField(serializers.Field):  # type: ignore[type-arg]
    """One of the tenant's objects of ``model``, named by its public id."""

    def __init__(self, model: type[Any], noun: str, **kwargs: Any) -> None:
        self.model = model
        self.noun = noun
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        key = parse_uuid(data) if isinstance(data, str) else None
        if key is None:
            raise serializers.ValidationError(f"A {self.noun} id is a UUID.")
        found = self.model.objects.filter(tenant=_scoped(self.context), key=key).first()
        if found is None:
            raise serializers.ValidationError(f"No {self.noun} with id {key}.")
        return found

    def to_representation(self, value: Any) -> str:
        return str(value.key)


# --- messages -----------------------------------------------------------------------------


class MessageCreateSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    """``POST /api/v1/instances/{id}/messages``."""

    to = PhoneField()
    text = StrictCharField(
        max_length=MAX_TEXT,
        trim_whitespace=False,
        help_text="1-4096 characters, not only spaces.",
    )

    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="Optional: not sent after this time (ISO 8601); then it fails with reason `expired`.",
    )

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The text may not be empty or only spaces.")
        return value

    def validate_expires_at(self, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_KEY_ERROR = f"1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters, such as a UUID."


def valid_idempotency_key(raw: str) -> str | None:
    """``raw`` stripped when it is a usable idempotency key, else None."""
    key = raw.strip()
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or any(not 32 <= ord(ch) <= 126 for ch in key):
        return None
    return key


class MessageBatchItemSerializer(MessageCreateSerializer):
    """One message of ``POST /api/v1/messages/batch``: the single message's
    fields, plus its instance and, optionally, its idempotency key."""

    instance = serializers.UUIDField(help_text="The public id of one of your instances.")
    idempotency_key = StrictCharField(
        required=False,
        trim_whitespace=False,
        allow_blank=True,
        help_text="Optional, 1-200 printable ASCII characters, unique per tenant (as the Idempotency-Key header).",
    )

    def validate_idempotency_key(self, value: str) -> str:
        key = valid_idempotency_key(value)
        if key is None:
            raise serializers.ValidationError(IDEMPOTENCY_KEY_ERROR)
        return key


class MessageBatchSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    """``POST /api/v1/messages/batch``: all items valid, or none is stored.

    Errors of items are a list beside the items, ``{}`` for the valid ones.
    Instances are looked up with one query for the whole batch; another
    tenant's instance reads exactly like one that does not exist.
    """

    def get_fields(self) -> dict[str, Any]:
        from campaigns import conf

        fields = super().get_fields()
        limit = int(conf.get("BLAST_MESSAGE_BATCH_MAX"))  # read per request, so tests can override it
        fields["messages"] = MessageBatchItemSerializer(
            many=True,
            allow_empty=False,
            max_length=limit,
            help_text=f"1 to {limit} messages, all valid or none stored.",
        )
        return fields

    def validate_messages(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wanted = {item["instance"] for item in items}
        found = {i.key: i for i in Instance.objects.filter(tenant=_scoped(self.context), key__in=wanted)}
        errors: list[dict[str, list[str]]] = [{} for _ in items]
        first_of_key: dict[str, int] = {}
        for index, item in enumerate(items):
            instance = found.get(item["instance"])
            if instance is None:
                errors[index]["instance"] = [f"No instance with id {item['instance']}."]
            item["instance"] = instance
            key = item.setdefault("idempotency_key", "")
            if key and key in first_of_key:
                errors[index]["idempotency_key"] = [
                    f"This idempotency key is also used by item {first_of_key[key]} of this batch."
                ]
            first_of_key.setdefault(key, index)
        if any(errors):
            raise serializers.ValidationError(errors)
        return items


class MessageSerializer(serializers.ModelSerializer[Message]):
    """A message as tenants see it; ``id`` is its public UUID (also the
    protocol's client message id, as 32 hex digits)."""

    id = serializers.UUIDField(source="key", read_only=True)
    instance = serializers.UUIDField(source="instance.key", read_only=True)
    campaign = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    failure_reason = serializers.ChoiceField(
        choices=[("", ""), *FailureReason.choices], read_only=True, help_text="Why it failed; empty unless failed."
    )
    not_before = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "instance",
            "campaign",
            "to",
            "text",
            "status",
            "failure_reason",
            "error",
            "attempts",
            "not_before",
            "held",
            "expires_at",
            "idempotency_key",
            "created_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "uuid", "nullable": True})
    def get_campaign(self, message: Message) -> str | None:
        return str(message.campaign.key) if message.campaign_id is not None else None  # type: ignore[union-attr]

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_not_before(self, message: Message) -> str | None:
        if message.not_before is None or message.not_before >= HOLD:
            return None
        return serializers.DateTimeField().to_representation(message.not_before)  # type: ignore[no-any-return]

    @extend_schema_field({"type": "boolean", "description": "Held while its campaign is paused."})
    def get_held(self, message: Message) -> bool:
        return message.not_before is not None and message.not_before >= HOLD


class MessageBatchResultSerializer(serializers.Serializer[Any]):
    """The answer of ``POST /api/v1/messages/batch``."""

    messages = MessageSerializer(many=True, help_text="The messages, in request order.")


class MessageListQuerySerializer(serializers.Serializer[Any]):
    instance = serializers.UUIDField(required=False, help_text="Only this instance's messages.")
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    campaign = serializers.UUIDField(required=False, help_text="Only this campaign's messages.")


# --- contact lists ------------------------------------------------------------------------


class ContactListSerializer(StrictSerializerMixin, serializers.ModelSerializer[ContactList]):
    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(max_length=200, validators=[validate_display_name])
    fields = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Custom fields, from the uploads' headers."
    )
    contacts = serializers.SerializerMethodField(help_text="How many contacts the list holds.")

    class Meta:
        model = ContactList
        fields = ["id", "name", "fields", "contacts", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[Any] = []

    def get_contacts(self, contact_list: ContactList) -> int:
        counted = getattr(contact_list, "contact_count", None)
        return int(counted if counted is not None else contact_list.contacts.count())

    def validate_name(self, value: str) -> str:
        clash = ContactList.objects.filter(tenant=_scoped(self.context), name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("You already have a contact list with this name.")
        return value


def validate_field_values(value: Any) -> dict[str, str]:
    """Custom fields of one contact: names as template fields, text values."""
    if not isinstance(value, dict):
        raise serializers.ValidationError("Custom fields are an object of names to text values.")
    if len(value) > MAX_CONTACT_FIELDS:
        raise serializers.ValidationError(f"At most {MAX_CONTACT_FIELDS} custom fields.")
    cleaned: dict[str, str] = {}
    for name, item in value.items():
        key = str(name).strip().lower()
        if not NAME.match(key) or key == "phone":
            raise serializers.ValidationError(
                f"'{str(name)[:40]}' is not a field name (letters, digits and _, starting with a letter or _; "
                "not 'phone')."
            )
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise serializers.ValidationError(f"The value of '{key}' must be text.")
        text = str(item).strip()
        if len(text) > MAX_FIELD_VALUE:
            raise serializers.ValidationError(f"The value of '{key}' is longer than {MAX_FIELD_VALUE} characters.")
        if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise serializers.ValidationError(f"The value of '{key}' holds characters that are not text.")
        cleaned[key] = text
    return cleaned


class ContactSerializer(StrictSerializerMixin, serializers.ModelSerializer[Contact]):
    phone = PhoneField()
    fields = serializers.JSONField(required=False, help_text="Custom fields: name -> text.")

    class Meta:
        model = Contact
        fields = ["id", "phone", "fields", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list[Any] = []

    def validate_fields(self, value: Any) -> dict[str, str]:
        return validate_field_values(value if value is not None else {})


class UploadResultSerializer(serializers.Serializer[Any]):
    """What a CSV upload did (campaigns.contacts.ImportResult)."""

    class RowErrorSerializer(serializers.Serializer[Any]):
        row = serializers.IntegerField(help_text="Row number as a spreadsheet shows it (the header is row 1).")
        message = serializers.CharField()

    rows = serializers.IntegerField(help_text="Data rows read.")
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Rows merged into an earlier row of the file.")
    invalid = serializers.IntegerField(help_text="Rows refused (see errors).")
    errors = RowErrorSerializer(many=True)
    errors_truncated = serializers.BooleanField(help_text="More rows were refused than errors lists.")
    fields = serializers.ListField(child=serializers.CharField())
    contacts = serializers.IntegerField(help_text="The list's size after the upload.")


# --- campaigns ------------------------------------------------------------------------------


class AllowedHoursSerializer(serializers.Serializer[Any]):
    """``{"start": "09:00", "end": "18:00", "weekdays": [0, 1, 2, 3, 4]}``, or null: any time."""

    start = serializers.TimeField(required=False, allow_null=True, help_text="Local time, e.g. 09:00.")
    end = serializers.TimeField(
        required=False, allow_null=True, help_text="Local time; before start spans midnight; equal: all day."
    )
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        required=False,
        max_length=7,
        help_text="Days a window may open, 0 = Monday; empty: every day.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("start") is None) != (attrs.get("end") is None):
            raise serializers.ValidationError("Give both start and end, or neither.")
        return attrs

    def get_attribute(self, instance: Any) -> Any:
        if not isinstance(instance, Campaign):
            return super().get_attribute(instance)
        if instance.allowed_start is None and not instance.allowed_weekdays:
            return None
        return {
            "start": instance.allowed_start,
            "end": instance.allowed_end,
            "weekdays": sorted(instance.allowed_weekdays or []),
        }


class InstanceKeysField(serializers.ListField):
    """The campaign's instances as their public ids (written as a list of them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.UUIDField(), **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        if isinstance(instance, Campaign):
            return list(instance.instances.order_by("id").values_list("key", flat=True))
        return super().get_attribute(instance)


class CampaignSerializer(StrictSerializerMixin, serializers.ModelSerializer[Campaign]):
    """A campaign as tenants see and write it."""

    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(max_length=200, validators=[validate_display_name])
    status = serializers.ChoiceField(choices=CampaignStatus.choices, read_only=True)
    template = StrictCharField(
        max_length=20_000,
        trim_whitespace=False,
        required=False,
        allow_blank=True,
        help_text="{{field}} variables and {Hi|Hello} spintax.",
    )
    contact_list = TenantObjectField(ContactList, "contact list", required=False, allow_null=True)
    instances = InstanceKeysField(
        required=False, max_length=1000, help_text="Instance ids to send through (rotation over them)."
    )
    rotation = serializers.ChoiceField(choices=RotationMode.choices, required=False)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    timezone = StrictCharField(source="time_zone", max_length=64, required=False, help_text="IANA name.")
    allowed_hours = AllowedHoursSerializer(required=False, allow_null=True)
    send_delay_min_s = serializers.FloatField(required=False, min_value=0, max_value=MAX_DELAY_S)
    send_delay_max_s = serializers.FloatField(required=False, min_value=0, max_value=MAX_DELAY_S)
    pause_reason = serializers.ChoiceField(choices=[("", ""), *PauseReason.choices], read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "status",
            "template",
            "contact_list",
            "instances",
            "rotation",
            "start_at",
            "timezone",
            "allowed_hours",
            "send_delay_min_s",
            "send_delay_max_s",
            "pause_reason",
            "status_message",
            "expanded_count",
            "created_at",
            "updated_at",
            "scheduled_at",
            "started_at",
            "paused_at",
            "completed_at",
            "cancelled_at",
        ]
        read_only_fields = [
            "status_message",
            "expanded_count",
            "created_at",
            "updated_at",
            "scheduled_at",
            "started_at",
            "paused_at",
            "completed_at",
            "cancelled_at",
        ]

    def validate_instances(self, value: list[uuid.UUID]) -> list[Instance]:
        keys = list(dict.fromkeys(value))
        found = {i.key: i for i in Instance.objects.filter(tenant=_scoped(self.context), key__in=keys)}
        missing = [str(k) for k in keys if k not in found]
        if missing:
            raise serializers.ValidationError(f"No instance with id {', '.join(missing[:5])}.")
        return [found[k] for k in keys]

    def validate_timezone(self, value: str) -> str:
        try:
            schedule.zone(value)
        except schedule.ScheduleError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_template(self, value: str) -> str:
        try:
            parse_template(value)
        except TemplateError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        errors: dict[str, str] = {}

        def value(name: str, default: Any = None) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(current, name, default) if current is not None else default

        low = value("send_delay_min_s", float(settings.BLAST_CAMPAIGN_DELAY_MIN_S))
        high = value("send_delay_max_s", float(settings.BLAST_CAMPAIGN_DELAY_MAX_S))
        for name, number in (("send_delay_min_s", low), ("send_delay_max_s", high)):
            if number is not None and not math.isfinite(number):
                errors[name] = "A delay is a finite number of seconds."
        if not errors and low is not None and high is not None and low > high:
            errors["send_delay_max_s"] = f"The maximum delay ({high} s) is below the minimum ({low} s)."
        template = value("template", "")
        contact_list = value("contact_list")
        if template and contact_list is not None and "template" not in errors:
            try:
                parse_template(template).check_fields(contact_list.fields or [])
            except TemplateError as exc:
                errors["template"] = str(exc)
        if "allowed_hours" in attrs:
            hours = attrs.pop("allowed_hours") or {}
            attrs["allowed_start"] = hours.get("start")
            attrs["allowed_end"] = hours.get("end")
            attrs["allowed_weekdays"] = sorted(set(hours.get("weekdays") or []))
            if attrs["allowed_weekdays"] == list(range(7)):
                attrs["allowed_weekdays"] = []
        start_at = attrs.get("start_at")
        if start_at is not None and start_at.year >= 9999:
            errors["start_at"] = "The start time is too far ahead."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Campaign:
        instances = validated_data.pop("instances", None)
        campaign = Campaign.objects.create(**validated_data)
        if instances:
            campaign.instances.set(instances)
        return campaign

    def update(self, campaign: Campaign, validated_data: dict[str, Any]) -> Campaign:
        instances = validated_data.pop("instances", None)
        for name, item in validated_data.items():
            setattr(campaign, name, item)
        campaign.updated_at = dt.datetime.now(dt.UTC)
        campaign.save()
        if instances is not None:
            campaign.instances.set(instances)
        return campaign


class CampaignRenameSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    """PATCH of a campaign that has started: only its name may change."""

    name = StrictCharField(max_length=200, validators=[validate_display_name])


class ReportSerializer(serializers.Serializer[Any]):
    """``GET /api/v1/campaigns/{id}/report`` (campaigns.reports.report)."""

    class ProgressSerializer(serializers.Serializer[Any]):
        done = serializers.IntegerField(help_text="Messages in a final status (sent, delivered, read, failed).")
        remaining = serializers.IntegerField()
        percent = serializers.FloatField()
        expanded = serializers.BooleanField(help_text="Every contact has its message row.")

    class ThroughputSerializer(serializers.Serializer[Any]):
        sent = serializers.IntegerField(help_text="Messages accepted by the network so far.")
        first_sent_at = serializers.DateTimeField(allow_null=True)
        last_sent_at = serializers.DateTimeField(allow_null=True)
        per_minute_overall = serializers.FloatField(allow_null=True)
        per_minute_last_10_min = serializers.FloatField(allow_null=True)
        sent_last_hour = serializers.IntegerField()
        estimated_completion_at = serializers.DateTimeField(allow_null=True)
        queued = serializers.IntegerField()

    campaign = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    pause_reason = serializers.CharField(allow_blank=True)
    status_message = serializers.CharField(allow_blank=True)
    recipients = serializers.IntegerField(help_text="Contacts the campaign covers.")
    messages = serializers.IntegerField(help_text="Message rows created so far.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Messages by status.")
    progress = ProgressSerializer()
    throughput = ThroughputSerializer()
    failures = serializers.DictField(child=serializers.IntegerField(), help_text="Failed messages by reason.")
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    generated_at = serializers.DateTimeField()


# --- opt-outs, quota ----------------------------------------------------------------------------


class OptOutSerializer(StrictSerializerMixin, serializers.ModelSerializer[OptOut]):
    phone = PhoneField()
    source = serializers.ChoiceField(choices=OptOutSource.choices, read_only=True)
    note = StrictCharField(max_length=200, required=False, allow_blank=True)

    class Meta:
        model = OptOut
        fields = ["phone", "source", "note", "created_at"]
        read_only_fields = ["created_at"]
        validators: list[Any] = []


class QuotaSerializer(serializers.Serializer[Any]):
    monthly_limit = serializers.IntegerField(allow_null=True, help_text="Null: unlimited.")
    used = serializers.IntegerField(help_text="Messages counted this calendar month (UTC).")
    remaining = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateTimeField()


# --- webhooks -----------------------------------------------------------------------------------


class WebhookSerializer(StrictSerializerMixin, serializers.ModelSerializer[TenantWebhook]):
    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(max_length=100, validators=[validate_display_name])
    url = StrictCharField(max_length=500, help_text="http:// or https://, a public address.")
    instance = TenantObjectField(
        Instance, "instance", required=False, allow_null=True, help_text="Only this instance's events."
    )

    class Meta:
        model = TenantWebhook
        fields = ["id", "name", "url", "instance", "message_events", "instance_events", "enabled", "created_at"]
        read_only_fields = ["created_at"]

    def validate_url(self, value: str) -> str:
        try:
            validate_webhook_url(value)
        except DjangoValidationError:
            raise serializers.ValidationError("Enter an http:// or https:// URL.") from None
        problem = webhooks.url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The signing secret: shown once, here. Verify X-Blast-Signature with it."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    id = serializers.UUIDField(source="uid", read_only=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "status",
            "event_count",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "response_excerpt",
            "error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields
