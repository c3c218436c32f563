"""Sending policies: an instance's, ``GET/PATCH /api/v1/instances/{id}/sending-policy``,
and the tenant's defaults for its new instances, ``GET/PATCH /api/v1/sending-defaults``.

The tenant sets the delay range, the hourly and daily caps, the sending
hours and whether a newly paired number warms up; the instance's answer also
shows what is in force now (instances.sending: warm-up, slow-downs and
sending hours applied) and why. A change takes effect on the instance's next
send: the worker reads the columns with each batch of messages.

An instance created with a policy field left at the platform's default takes
the tenant's default (instances.models.SendingDefaults); ``apply_to_instances``
in a PATCH of the defaults also writes the fields it sets to every instance
the tenant has (sent alone: every default that is set).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializerMixin,
)
from api.views import ID, TenantView, errors
from instances import sending
from instances.models import POLICY_FIELDS, Instance, SendingDefaults

# Far above any account's volume, and inside every database's integer column.
MAX_CAP = 1_000_000


class InForceSerializer(serializers.Serializer[Any]):
    delay_min_s = serializers.FloatField()
    delay_max_s = serializers.FloatField()
    hourly_cap = serializers.IntegerField(help_text="0: no cap.")
    daily_cap = serializers.IntegerField(help_text="0: no cap; lowered by the warm-up while it lasts.")
    warmup_day = serializers.IntegerField(
        allow_null=True, help_text="The warm-up's day (0: the first) while it lasts; null otherwise."
    )
    slowed = serializers.BooleanField(help_text="Slowed down after rate-limit nacks (until slowed_until).")
    paused = serializers.BooleanField(
        help_text="Nothing is sent now: paused after repeated limits (until paused_until), or outside sending hours."
    )
    hours_open_at = serializers.DateTimeField(
        allow_null=True, help_text="Outside the sending hours: when they open next; null otherwise."
    )


@extend_schema_field({"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "example": "09:00"})
class LocalTimeField(serializers.TimeField):
    """A local clock time, HH:MM, with no time zone of its own."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)


HOURS_HELP = {
    "send_hours_start": "Send from this local time, HH:MM (with an end); null: at any hour.",
    "send_hours_end": "Until this local time; before the start: overnight (22:00 to 06:00).",
    "send_timezone": "The IANA time zone of the sending hours, e.g. America/Sao_Paulo.",
}


def check_policy(attrs: dict[str, Any], current: Any) -> None:
    """Raise the field-level 400 for a policy ``attrs`` would make of
    ``current`` (an instance, or a tenant's defaults, whose blank fields are
    the platform's settings)."""
    problems = sending.check({**{name: getattr(current, name) for name in POLICY_FIELDS}, **attrs})
    if problems:
        raise serializers.ValidationError({name: [why] for name, why in problems.items()})


def days_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=sending.DAY_NAMES),
        required=False,
        allow_empty=False,
        min_length=1,
        max_length=7,
        help_text="The days messages go out on, local to the time zone (mon ... sun); a window that spans "
        "midnight belongs to the day it starts on.",
        **kwargs,
    )


class SendingPolicySerializer(StrictSerializerMixin, serializers.ModelSerializer[Instance]):
    send_delay_min_s = StrictFloatField(
        required=False, min_value=0, max_value=sending.MAX_DELAY_S, help_text="Shortest pause between two sends."
    )
    send_delay_max_s = StrictFloatField(
        required=False, min_value=0, max_value=sending.MAX_DELAY_S, help_text="Longest; at least the shortest."
    )
    hourly_cap = StrictIntegerField(
        required=False, min_value=0, max_value=MAX_CAP, help_text="Sends in any hour; 0: no cap."
    )
    daily_cap = StrictIntegerField(
        required=False, min_value=0, max_value=MAX_CAP, help_text="Sends in any 24 hours; 0: no cap."
    )
    warmup = StrictBooleanField(
        required=False, help_text="A newly paired number starts at BLAST_WARMUP_SCHEDULE's daily caps."
    )
    typing = StrictBooleanField(
        required=False, help_text="Show the account typing for 1 to 5 s before each message (gateways with presence)."
    )
    send_hours_start = LocalTimeField(required=False, allow_null=True, help_text=HOURS_HELP["send_hours_start"])
    send_hours_end = LocalTimeField(required=False, allow_null=True, help_text=HOURS_HELP["send_hours_end"])
    send_timezone = StrictCharField(required=False, max_length=64, help_text=HOURS_HELP["send_timezone"])
    send_days = days_field()
    in_force = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = [
            "send_delay_min_s",
            "send_delay_max_s",
            "hourly_cap",
            "daily_cap",
            "warmup",
            "typing",
            "send_hours_start",
            "send_hours_end",
            "send_timezone",
            "send_days",
            "warmup_started_at",
            "slowed_until",
            "paused_until",
            "in_force",
        ]
        read_only_fields = ["warmup_started_at", "slowed_until", "paused_until"]

    @extend_schema_field(InForceSerializer)
    def get_in_force(self, instance: Instance) -> dict[str, Any]:
        effective = sending.in_force(instance, time.time())
        return {
            "delay_min_s": effective.delay_min_s,
            "delay_max_s": effective.delay_max_s,
            "hourly_cap": effective.hourly_cap,
            "daily_cap": effective.daily_cap,
            "warmup_day": effective.warmup_day,
            "slowed": effective.slowed,
            "paused": effective.paused_until > 0,
            "hours_open_at": _at(effective.hours_open_at),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        assert self.instance is not None
        check_policy(attrs, self.instance)
        return attrs


def _at(epoch: float) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


@extend_schema(tags=["instances"])
class SendingPolicyView(TenantView):
    http_method_names = ["get", "patch", "head", "options"]
    serializer_class = SendingPolicySerializer

    @extend_schema(
        operation_id="instances_sending_policy",
        summary="The instance's sending policy, and what is in force now",
        parameters=[ID],
        responses={200: SendingPolicySerializer, **errors(401, 404)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response(SendingPolicySerializer(self.get_instance()).data)

    @extend_schema(
        operation_id="instances_sending_policy_update",
        summary="Change the delays, caps, hours or warm-up; the next send follows them",
        parameters=[ID],
        request=SendingPolicySerializer,
        responses={200: SendingPolicySerializer, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        instance = self.get_instance()
        serializer = SendingPolicySerializer(instance, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data:
            # Only these columns: the worker writes the others meanwhile.
            Instance.objects.filter(pk=instance.pk).update(**serializer.validated_data)
        return Response(SendingPolicySerializer(self.get_instance()).data)


class SendingDefaultsSerializer(StrictSerializerMixin, serializers.ModelSerializer[SendingDefaults]):
    """The tenant's defaults; null (or an empty time zone) keeps the platform's setting."""

    send_delay_min_s = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=sending.MAX_DELAY_S)
    send_delay_max_s = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=sending.MAX_DELAY_S)
    hourly_cap = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_CAP)
    daily_cap = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_CAP)
    warmup = StrictBooleanField(required=False, allow_null=True)
    typing = StrictBooleanField(required=False, allow_null=True)
    send_hours_start = LocalTimeField(required=False, allow_null=True, help_text=HOURS_HELP["send_hours_start"])
    send_hours_end = LocalTimeField(required=False, allow_null=True, help_text=HOURS_HELP["send_hours_end"])
    send_timezone = StrictCharField(
        required=False, allow_blank=True, max_length=64, help_text=HOURS_HELP["send_timezone"]
    )
    send_days = days_field(allow_null=True)
    apply_to_instances = StrictBooleanField(
        required=False,
        write_only=True,
        help_text="Also write the fields this request sets to every instance you have (null ones: the platform's); "
        "sent alone, every default that is set.",
    )

    class Meta:
        model = SendingDefaults
        fields = [*POLICY_FIELDS, "apply_to_instances", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        assert self.instance is not None
        check_policy(attrs, self.instance)
        return attrs


def apply_to_instances(tenant_id: int, attrs: dict[str, Any]) -> int:
    """Write the given default fields to every instance of ``tenant_id``
    (null: the platform's default); how many instances."""
    policy = sending.with_platform_defaults(attrs)
    fields = {name: policy[name] for name in attrs if name in POLICY_FIELDS}
    if not fields:
        return 0
    return Instance.objects.filter(tenant_id=tenant_id).update(**fields)


@extend_schema(tags=["instances"])
class SendingDefaultsView(TenantView):
    http_method_names = ["get", "patch", "head", "options"]
    serializer_class = SendingDefaultsSerializer

    def defaults(self) -> SendingDefaults:
        defaults, _ = SendingDefaults.objects.get_or_create(tenant=self.tenant)
        return defaults

    @extend_schema(
        operation_id="sending_defaults",
        summary="The sending policy your new instances start with",
        responses={200: SendingDefaultsSerializer, **errors(401)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response(SendingDefaultsSerializer(self.defaults()).data)

    @extend_schema(
        operation_id="sending_defaults_update",
        summary="Change the defaults; with apply_to_instances, every instance's policy too",
        request=SendingDefaultsSerializer,
        responses={200: SendingDefaultsSerializer, **errors(400, 401, 413, 415)},
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        defaults = self.defaults()
        serializer = SendingDefaultsSerializer(defaults, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        attrs = dict(serializer.validated_data)
        apply = attrs.pop("apply_to_instances", False)
        with transaction.atomic():
            if attrs:
                for name, value in attrs.items():
                    setattr(defaults, name, value)
                defaults.save(update_fields=[*attrs, "updated_at"])
            if apply:
                # The fields this request sets; alone, every default that is set.
                apply_to_instances(self.tenant.pk, attrs or defaults.values())
        return Response(SendingDefaultsSerializer(defaults).data)
