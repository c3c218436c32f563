"""Number checks: ``POST /api/v1/instances/{id}/number-checks`` asks which
numbers are on WhatsApp through that instance's gateway (answered from the
tenant's cache where it can, the rest asked 50 at a time, paced);
``GET /api/v1/number-checks/{id}`` shows how far it got."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictSerializerMixin
from campaigns import numbers, phones
from campaigns.api.base import INSTANCE_ID, CampaignsView, errors, uuid_parameter
from campaigns.api.fields import settings_region
from campaigns.models import NumberCheck

CHECK_ID = uuid_parameter("id", "number check")


class NumberCheckRequestSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    phones = serializers.ListField(
        child=serializers.CharField(max_length=phones.MAX_INPUT),
        allow_empty=False,
        min_length=1,
        max_length=int(settings.BLAST_NUMBER_CHECK_MAX),
        help_text="1 to BLAST_NUMBER_CHECK_MAX (1000) phone numbers, any form phonenumbers reads.",
    )

    def validate_phones(self, raw: list[str]) -> list[str]:
        limit = int(settings.BLAST_NUMBER_CHECK_MAX)
        if len(raw) > limit:
            raise serializers.ValidationError(f"At most {limit} numbers per check.")
        found: list[str] = []
        bad: list[str] = []
        for value in raw:
            try:
                number = phones.normalise(value, settings_region())
            except phones.InvalidPhone as exc:
                bad.append(str(exc))
                continue
            if number not in found:
                found.append(number)
        if bad:
            raise serializers.ValidationError(bad[:20])
        return found


class NumberCheckSerializer(serializers.ModelSerializer[NumberCheck]):
    id = serializers.UUIDField(source="key", read_only=True)
    instance = serializers.UUIDField(source="instance.key", read_only=True)
    results = serializers.DictField(
        child=serializers.BooleanField(), read_only=True, help_text="Number -> on WhatsApp, as answered so far."
    )
    pending = serializers.SerializerMethodField(help_text="Numbers not answered yet.")

    class Meta:
        model = NumberCheck
        fields = ["id", "instance", "status", "phones", "results", "pending", "error", "created_at", "finished_at"]
        read_only_fields = fields

    def get_pending(self, check: NumberCheck) -> int:
        return sum(1 for p in check.phones if p not in check.results)


@extend_schema(tags=["number checks"])
class NumberCheckCreateView(CampaignsView):
    http_method_names = ["post", "options"]
    serializer_class = NumberCheckRequestSerializer

    @extend_schema(
        operation_id="number_checks_create",
        summary="Check which numbers are on WhatsApp",
        description=(
            "Answered at once from your cache (answers younger than BLAST_NUMBER_CHECK_CACHE_H, 7 days) where "
            "possible; the rest is asked through the instance's gateway, 50 numbers at a time, "
            "BLAST_NUMBER_CHECK_PACE_S apart, while its session is ready. The check fails with its reason when "
            "the gateway does not serve number checks (protocol v1.1 `check`)."
        ),
        parameters=[INSTANCE_ID],
        request=NumberCheckRequestSerializer,
        responses={202: NumberCheckSerializer, **errors(400, 401, 404, 415)},
    )
    def post(self, request: Request, id: str) -> Response:
        instance = self.get_instance()
        serializer = NumberCheckRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = numbers.request(self.tenant, instance, serializer.validated_data["phones"])
        check.instance = instance
        response = Response(NumberCheckSerializer(check).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/number-checks/{check.key}"
        return response


@extend_schema(tags=["number checks"])
class NumberCheckDetailView(CampaignsView):
    http_method_names = ["get", "head", "options"]
    serializer_class = NumberCheckSerializer

    @extend_schema(
        operation_id="number_checks_retrieve",
        parameters=[CHECK_ID],
        responses={200: NumberCheckSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        queryset = NumberCheck.objects.filter(tenant=self.tenant).select_related("instance")
        return Response(NumberCheckSerializer(self.tenant_object(queryset, id, "number check")).data)
