"""An instance's sending policy: ``GET/PATCH /api/v1/instances/{id}/sending-policy``.

The tenant sets the delay range, the hourly and daily caps and whether a
newly paired number warms up; the answer also shows what is in force now
(instances.sending: warm-up and slow-downs applied) and why. A change takes
effect on the instance's next send: the worker reads the columns with each
batch of messages.
"""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictBooleanField, StrictFloatField, StrictIntegerField, StrictSerializerMixin
from api.views import ID, TenantView, errors
from instances import sending
from instances.models import Instance

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
    paused = serializers.BooleanField(help_text="Sending paused after repeated limits (until paused_until).")


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
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        assert current is not None

        def value(name: str) -> Any:
            return attrs.get(name, getattr(current, name))

        problems = sending.policy_problems(
            value("send_delay_min_s"), value("send_delay_max_s"), value("hourly_cap"), value("daily_cap")
        )
        if problems:
            raise serializers.ValidationError({name: [why] for name, why in problems.items()})
        return attrs


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
        summary="Change the delays, caps or warm-up; the next send follows them",
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
