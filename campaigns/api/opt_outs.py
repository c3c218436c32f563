"""The tenant's opt-out list: numbers it never sends to (:mod:`campaigns.optouts`)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictCharField, StrictSerializerMixin
from campaigns import optouts, phones
from campaigns.api.base import CampaignsView, errors
from campaigns.api.fields import PhoneField
from campaigns.models import OptOut, OptOutSource


class OptOutSerializer(StrictSerializerMixin, serializers.ModelSerializer[OptOut]):
    phone = PhoneField()
    source = serializers.ChoiceField(choices=OptOutSource.choices, read_only=True)
    note = StrictCharField(max_length=200, required=False, allow_blank=True)

    class Meta:
        model = OptOut
        fields = ["phone", "source", "note", "created_at"]
        read_only_fields = ["created_at"]
        validators: list[Any] = []


@extend_schema(tags=["opt-outs"])
class OptOutListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = OptOutSerializer

    def get_queryset(self) -> QuerySet[OptOut]:
        return OptOut.objects.filter(tenant=self.tenant).order_by("-created_at", "-id")

    @extend_schema(
        operation_id="opt_outs_list",
        summary="Numbers the tenant never sends to, newest first",
        responses={200: OptOutSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="opt_outs_create",
        summary="Opt a number out (its unsent queued messages fail with reason opted_out)",
        request=OptOutSerializer,
        responses={201: OptOutSerializer, 200: OptOutSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row, created = optouts.add(
            self.tenant,
            serializer.validated_data["phone"],
            OptOutSource.API,
            note=serializer.validated_data.get("note", ""),
        )
        return Response(OptOutSerializer(row).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema(tags=["opt-outs"])
class OptOutDetailView(CampaignsView):
    http_method_names = ["delete", "options"]
    serializer_class = OptOutSerializer

    @extend_schema(
        operation_id="opt_outs_destroy",
        summary="Take a number off the opt-out list",
        parameters=[OpenApiParameter("phone", OpenApiTypes.STR, OpenApiParameter.PATH, description="E.164.")],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, phone: str) -> Response:
        try:
            number = phones.normalise(phone)
        except phones.InvalidPhone:
            raise exceptions.NotFound("This number is not on the opt-out list.") from None
        if not optouts.remove(self.tenant, number):
            raise exceptions.NotFound("This number is not on the opt-out list.")
        return Response(status=status.HTTP_204_NO_CONTENT)
