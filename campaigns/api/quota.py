"""The tenant's monthly message quota: ``GET /api/v1/quota``
(:mod:`campaigns.quota`)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import quota
from campaigns.api.base import CampaignsView, errors


class QuotaSerializer(serializers.Serializer[Any]):
    monthly_limit = serializers.IntegerField(allow_null=True, help_text="Null: unlimited.")
    used = serializers.IntegerField(help_text="Messages counted this calendar month (UTC).")
    remaining = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateTimeField()


@extend_schema(tags=["messages"])
class QuotaView(CampaignsView):
    http_method_names = ["get", "head", "options"]
    serializer_class = QuotaSerializer

    @extend_schema(
        operation_id="quota_retrieve",
        summary="The tenant's monthly message quota and its use",
        responses={200: QuotaSerializer, **errors(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(QuotaSerializer(quota.status(self.tenant.pk, timezone.now())).data)
