"""Campaigns: create, change while a draft, delete, and the lifecycle
actions ``start``, ``pause``, ``resume`` and ``cancel`` (:mod:`campaigns.lifecycle`;
409 when the campaign's status does not allow the move)."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import Conflict
from api.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictDateTimeField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializerMixin,
    StrictUUIDField,
    validate_display_name,
)
from campaigns import lifecycle, states
from campaigns.api.base import CAMPAIGN_ID, CampaignsView, errors
from campaigns.api.fields import TenantObjectField, scoped_tenant
from campaigns.models import Campaign, CampaignStatus, ContactList, PauseReason, RotationMode
from campaigns.templating import TemplateError
from campaigns.templating import parse as parse_template
from instances import schedule
from instances.models import Instance
from media.models import Media

MAX_DELAY_S = 86_400.0
PRINTABLE = "Printable characters, not only spaces (no control or invisible ones)."


# "09:00", or with seconds "09:00:30": local wall-clock times of a day.
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
CLOCK = re.compile(CLOCK_PATTERN)
WEEKDAYS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 6},
    "maxItems": 7,
    "description": "Days a window may open, 0 = Monday; empty: every day.",
}
CLOCK_SCHEMA: dict[str, Any] = {"type": "string", "pattern": CLOCK_PATTERN, "example": "09:00"}
ALLOWED_HOURS_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "title": "window",
            "properties": {
                "start": {**CLOCK_SCHEMA, "description": "Local time the window opens, HH:MM (or HH:MM:SS)."},
                "end": {
                    **CLOCK_SCHEMA,
                    "example": "18:00",
                    "description": "Local time it closes; before start spans midnight; equal: all day.",
                },
                "weekdays": WEEKDAYS_SCHEMA,
            },
            "required": ["start", "end"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "title": "days",
            "properties": {"weekdays": WEEKDAYS_SCHEMA},
            "additionalProperties": False,
            "description": "Any hour of these days.",
        },
    ],
    "nullable": True,
    "description": (
        'When the campaign may send, in its timezone: {"start": "09:00", "end": "18:00", "weekdays": [0, 1, 2, 3, 4]}, '
        "only weekdays, or null: any time."
    ),
}


@extend_schema_field(ALLOWED_HOURS_SCHEMA)
class AllowedHoursField(serializers.Field):  # type: ignore[type-arg]
    """A campaign's allowed hours (:data:`ALLOWED_HOURS_SCHEMA`): a window of
    the day on some weekdays, only weekdays, or null for any time. Read from
    and written to the campaign's ``allowed_*`` columns."""

    default_error_messages = {
        "invalid": 'Allowed hours are an object, {{"start": "09:00", "end": "18:00", "weekdays": [0, 1]}}, or null.',
        "both": "Give both start and end, or neither.",
        "clock": "A time of day is HH:MM (or HH:MM:SS), from 00:00 to 23:59.",
        "weekdays": "Weekdays are a list of at most 7 whole numbers from 0 (Monday) to 6 (Sunday).",
        "unknown": "Unknown key '{name}': allowed hours take start, end and weekdays.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("source", "*")
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> Any:
        return instance

    def to_representation(self, campaign: Campaign) -> dict[str, Any] | None:
        weekdays = sorted(campaign.allowed_weekdays or [])
        if campaign.allowed_start is None or campaign.allowed_end is None:
            return {"weekdays": weekdays} if weekdays else None
        return {"start": _clock(campaign.allowed_start), "end": _clock(campaign.allowed_end), "weekdays": weekdays}

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data is None and self.allow_null:
            return True, {"allowed_start": None, "allowed_end": None, "allowed_weekdays": []}
        return super().validate_empty_values(data)  # type: ignore[no-any-return]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("invalid")
        for name in data:
            if name not in ("start", "end", "weekdays"):
                self.fail("unknown", name=str(name)[:40])
        if ("start" in data) != ("end" in data):
            self.fail("both")
        start = _parse_clock(self, data["start"]) if "start" in data else None
        end = _parse_clock(self, data["end"]) if "end" in data else None
        weekdays = data.get("weekdays", [])
        if (
            not isinstance(weekdays, list)
            or len(weekdays) > 7
            or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in weekdays)
        ):
            self.fail("weekdays")
        days = sorted(set(weekdays))
        return {"allowed_start": start, "allowed_end": end, "allowed_weekdays": [] if days == list(range(7)) else days}


def _clock(value: dt.time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def _parse_clock(field: serializers.Field, value: Any) -> dt.time:  # type: ignore[type-arg]
    if not isinstance(value, str) or not CLOCK.fullmatch(value):
        field.fail("clock")
    return dt.time.fromisoformat(value)


@extend_schema_field(
    {
        "type": "string",
        "enum": sorted(schedule.zone_names()),
        "description": "An IANA timezone name, e.g. Europe/Paris or America/Sao_Paulo (default UTC).",
    }
)
class TimezoneField(StrictCharField):
    """An IANA timezone name, one of ``zoneinfo.available_timezones()``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            schedule.zone(value)
        except schedule.ScheduleError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class InstanceKeysField(serializers.ListField):
    """The campaign's instances as their public ids (written as a list of them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=StrictUUIDField(), **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        if isinstance(instance, Campaign):
            return list(instance.instances.order_by("id").values_list("key", flat=True))
        return super().get_attribute(instance)


class CampaignSerializer(StrictSerializerMixin, serializers.ModelSerializer[Campaign]):
    """A campaign as tenants see and write it."""

    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(max_length=200, validators=[validate_display_name], help_text=PRINTABLE)
    status = serializers.ChoiceField(choices=CampaignStatus.choices, read_only=True)
    template = StrictCharField(
        max_length=20_000,
        trim_whitespace=False,
        required=False,
        allow_blank=True,
        help_text="{{field}} variables (fields the contact list has, and phone) and {Hi|Hello} spintax.",
    )
    contact_list = TenantObjectField(
        ContactList, "contact list", required=False, allow_null=True, help_text="The id of one of your contact lists."
    )
    instances = InstanceKeysField(
        required=False, max_length=1000, help_text="Ids of your instances to send through (rotation over them)."
    )
    rotation = serializers.ChoiceField(choices=RotationMode.choices, required=False)
    start_at = StrictDateTimeField(required=False, allow_null=True, help_text="Before the year 9999; null: at start.")
    timezone = TimezoneField(source="time_zone", required=False)
    allowed_hours = AllowedHoursField(required=False, allow_null=True)
    send_delay_min_s = StrictFloatField(required=False, min_value=0, max_value=MAX_DELAY_S)
    send_delay_max_s = StrictFloatField(
        required=False, min_value=0, max_value=MAX_DELAY_S, help_text="At least send_delay_min_s."
    )
    media = TenantObjectField(
        Media,
        "media",
        required=False,
        allow_null=True,
        help_text="One of your media (POST /api/v1/media), sent with every message; the template is its caption.",
    )
    check_numbers = StrictBooleanField(
        required=False,
        help_text="Check recipients first (number check) and skip those not on WhatsApp, with reason not_on_network.",
    )
    deadline = StrictDateTimeField(
        required=False,
        allow_null=True,
        help_text="Messages still waiting on a stopped instance fail with instance_stopped after this time "
        "(null: BLAST_CAMPAIGN_STRANDED_FAIL_H, 24 h, after the instance stopped).",
    )
    reply_guard_percent = StrictFloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=100,
        help_text="Pause the campaign (reason low_reply_rate) when fewer than this percent of the recipients sent "
        "to have replied after reply_guard_after sends; null: off.",
    )
    reply_guard_after = StrictIntegerField(
        required=False, min_value=1, max_value=1_000_000, help_text="Sends before the reply guard judges (200)."
    )
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
            "media",
            "check_numbers",
            "deadline",
            "reply_guard_percent",
            "reply_guard_after",
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
        found = {i.key: i for i in Instance.objects.filter(tenant=scoped_tenant(self.context), key__in=keys)}
        missing = [str(k) for k in keys if k not in found]
        if missing:
            raise serializers.ValidationError(f"No instance with id {', '.join(missing[:5])}.")
        return [found[k] for k in keys]

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


def _campaigns(view: CampaignsView) -> QuerySet[Campaign]:
    return Campaign.objects.filter(tenant=view.tenant).select_related("contact_list")


@extend_schema(tags=["campaigns"])
class CampaignListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = CampaignSerializer

    def get_queryset(self) -> QuerySet[Campaign]:
        queryset = _campaigns(self).prefetch_related("instances").order_by("-created_at", "-id")
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in CampaignStatus.values:
                raise exceptions.ValidationError({"status": [f"'{wanted[:20]}' is not a campaign status."]})
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(
        operation_id="campaigns_list",
        summary="List campaigns, newest first",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=CampaignStatus.values)],
        responses={200: CampaignSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a campaign (a draft: POST .../start starts it)",
        request=CampaignSerializer,
        responses={201: CampaignSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            campaign = serializer.save(tenant=self.tenant)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["campaigns"])
class CampaignDetailView(CampaignsView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = CampaignSerializer

    @extend_schema(
        operation_id="campaigns_retrieve",
        summary="One campaign",
        parameters=[CAMPAIGN_ID],
        responses={200: CampaignSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(CampaignSerializer(self.campaign()).data)

    @extend_schema(
        operation_id="campaigns_update",
        summary="Change a draft campaign (only the name once it has started)",
        parameters=[CAMPAIGN_ID],
        request=CampaignSerializer,
        responses={200: CampaignSerializer, **errors(400, 401, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        with transaction.atomic():
            campaign = self.tenant_object(
                Campaign.objects.select_for_update().filter(tenant=self.tenant), id, "campaign"
            )
            context = self.get_serializer_context()
            if states.editable(campaign.status):
                serializer: serializers.Serializer[Any] = CampaignSerializer(
                    campaign, data=request.data, partial=True, context=context
                )
                serializer.is_valid(raise_exception=True)
                serializer.save()
            else:
                if isinstance(request.data, dict) and set(request.data) - {"name"}:
                    raise Conflict(f"The campaign is {campaign.status}: only its name can change.")
                serializer = CampaignRenameSerializer(data=request.data, partial=True, context=context)
                serializer.is_valid(raise_exception=True)
                if "name" in serializer.validated_data:
                    campaign.name = serializer.validated_data["name"]
                    campaign.updated_at = timezone.now()
                    campaign.save(update_fields=["name", "updated_at"])
        return Response(CampaignSerializer(self.campaign()).data)

    @extend_schema(
        operation_id="campaigns_destroy",
        summary="Delete a campaign and its messages (draft, completed or cancelled only)",
        parameters=[CAMPAIGN_ID],
        responses={204: None, **errors(401, 404, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        with transaction.atomic():
            campaign = self.tenant_object(
                Campaign.objects.select_for_update().filter(tenant=self.tenant), id, "campaign"
            )
            if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
                raise Conflict(f"The campaign is {campaign.status}: cancel it before deleting it.")
            campaign.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


ACTION_SUMMARIES = {
    "start": "Start a draft campaign (scheduled when its start time is ahead)",
    "pause": "Pause a running campaign: nothing more of it is sent",
    "resume": "Resume a paused campaign",
    "cancel": "Cancel a campaign for good: its unsent messages fail with reason cancelled",
}
ACTIONS = {"start": lifecycle.start, "pause": lifecycle.pause, "resume": lifecycle.resume, "cancel": lifecycle.cancel}


class CampaignActionView(CampaignsView):
    """``POST /api/v1/campaigns/{id}/<action>``: one lifecycle move; 409 when
    the campaign's status does not allow it."""

    http_method_names = ["post", "options"]
    serializer_class = CampaignSerializer
    action = "start"

    def post(self, request: Request, id: str) -> Response:
        campaign = self.campaign()
        try:
            ACTIONS[self.action](campaign.pk, self.client.actor)
        except states.IllegalTransition as exc:
            raise Conflict(str(exc)) from None
        return Response(CampaignSerializer(self.campaign()).data)


def _action_view(name: str) -> type[CampaignActionView]:
    schema = extend_schema(
        tags=["campaigns"],
        operation_id=f"campaigns_{name}",
        summary=ACTION_SUMMARIES[name],
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: CampaignSerializer, **errors(401, 404, 409)},
    )

    class View(CampaignActionView):
        action = name

        @schema
        def post(self, request: Request, id: str) -> Response:
            return super().post(request, id)

    View.__name__ = View.__qualname__ = f"Campaign{name.title()}View"
    return View


CampaignStartView = _action_view("start")
CampaignPauseView = _action_view("pause")
CampaignResumeView = _action_view("resume")
CampaignCancelView = _action_view("cancel")
