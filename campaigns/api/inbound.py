"""Inbound messages: what the tenant's instances received.

``GET /api/v1/inbound`` (newest first; ``?instance=``, ``?from=``,
``?campaign=``), ``GET /api/v1/inbound/{id}``, and the conversation with one
contact on one instance, ``GET /api/v1/instances/{id}/conversations/{phone}``:
the messages sent to the number and those received from it, in the order
they happened. Another tenant's inbound message or instance is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictUUIDField
from campaigns import phones
from campaigns.api.base import INSTANCE_ID, CampaignsView, errors, uuid_parameter
from campaigns.api.fields import settings_region
from campaigns.api.messages import MessageSerializer
from campaigns.models import InboundMessage, Message

INBOUND_ID = uuid_parameter("id", "inbound message")
# The most entries of each kind a conversation answer holds (the newest).
CONVERSATION_LIMIT = 200


class InboundSerializer(serializers.ModelSerializer[InboundMessage]):
    id = serializers.UUIDField(source="key", read_only=True)
    instance = serializers.UUIDField(source="instance.key", read_only=True)
    sender = serializers.CharField(read_only=True, help_text="E.164, as the gateway gave it.")
    in_reply_to = serializers.SerializerMethodField(help_text="The message this replies to, if any.")
    campaign = serializers.SerializerMethodField(help_text="The campaign of that message, if any.")
    auto_reply = serializers.SerializerMethodField(help_text="The message an auto-reply rule answered with, if any.")

    class Meta:
        model = InboundMessage
        fields = ["id", "instance", "sender", "text", "action", "in_reply_to", "campaign", "auto_reply", "received_at"]
        read_only_fields = fields

    def get_in_reply_to(self, row: InboundMessage) -> str | None:
        return str(row.in_reply_to.key) if row.in_reply_to_id is not None else None  # type: ignore[union-attr]

    def get_campaign(self, row: InboundMessage) -> str | None:
        return str(row.campaign.key) if row.campaign_id is not None else None  # type: ignore[union-attr]

    def get_auto_reply(self, row: InboundMessage) -> str | None:
        return str(row.auto_reply.key) if row.auto_reply_id is not None else None  # type: ignore[union-attr]


class InboundQuerySerializer(serializers.Serializer[Any]):
    instance = StrictUUIDField(required=False, help_text="Only this instance's.")
    campaign = StrictUUIDField(required=False, help_text="Only replies to this campaign's messages.")
    sender = serializers.CharField(required=False, help_text="Only from this number (any form phonenumbers reads).")


def _inbound(queryset: QuerySet[InboundMessage]) -> QuerySet[InboundMessage]:
    return queryset.select_related("instance", "in_reply_to", "campaign", "auto_reply")


@extend_schema(tags=["inbound"])
class InboundListView(CampaignsView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = InboundSerializer

    def get_queryset(self) -> QuerySet[InboundMessage]:
        blank = [n for n in InboundQuerySerializer().fields if self.request.query_params.get(n, "x").strip() == ""]
        if blank:
            raise exceptions.ValidationError({name: ["This filter may not be blank."] for name in blank})
        query = InboundQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        queryset = _inbound(InboundMessage.objects.filter(tenant=self.tenant)).order_by("-received_at", "-id")
        if "instance" in filters:
            queryset = queryset.filter(instance__key=filters["instance"])
        if "campaign" in filters:
            queryset = queryset.filter(campaign__key=filters["campaign"])
        if "sender" in filters:
            try:
                queryset = queryset.filter(sender=phones.normalise(filters["sender"], settings_region()))
            except phones.InvalidPhone:
                queryset = queryset.none()  # not a number: nobody sent from it
        return queryset

    @extend_schema(
        operation_id="inbound_list",
        summary="Messages your instances received, newest first",
        parameters=[InboundQuerySerializer],
        responses={200: InboundSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["inbound"])
class InboundDetailView(CampaignsView):
    http_method_names = ["get", "head", "options"]
    serializer_class = InboundSerializer

    @extend_schema(
        operation_id="inbound_retrieve", parameters=[INBOUND_ID], responses={200: InboundSerializer, **errors(401, 404)}
    )
    def get(self, request: Request, id: str) -> Response:
        row = self.tenant_object(_inbound(InboundMessage.objects.filter(tenant=self.tenant)), id, "inbound message")
        return Response(InboundSerializer(row).data)


class ConversationEntrySerializer(serializers.Serializer[Any]):
    direction = serializers.ChoiceField(choices=["out", "in"])
    at = serializers.DateTimeField()
    message = MessageSerializer(required=False, help_text="With direction out.")
    inbound = InboundSerializer(required=False, help_text="With direction in.")


@extend_schema(tags=["inbound"])
class ConversationView(CampaignsView):
    http_method_names = ["get", "head", "options"]
    serializer_class = ConversationEntrySerializer

    @extend_schema(
        operation_id="conversation_retrieve",
        summary="The conversation of one instance with one number",
        description=(
            f"The last {CONVERSATION_LIMIT} messages sent to the number and the last {CONVERSATION_LIMIT} received "
            "from it, oldest first: `{direction: out, at, message}` or `{direction: in, at, inbound}`."
        ),
        parameters=[INSTANCE_ID, OpenApiParameter("phone", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: ConversationEntrySerializer(many=True), **errors(401, 404)},
    )
    def get(self, request: Request, id: str, phone: str) -> Response:
        instance = self.get_instance()
        try:
            number = phones.normalise(phone, settings_region())
        except phones.InvalidPhone:
            raise exceptions.NotFound("No conversation with this number: it is not a phone number.") from None
        sent = (
            Message.objects.filter(instance=instance, to=number)
            .select_related("instance", "campaign", "media")
            .order_by("-created_at", "-id")[:CONVERSATION_LIMIT]
        )
        received = _inbound(InboundMessage.objects.filter(instance=instance, sender=number)).order_by(
            "-received_at", "-id"
        )[:CONVERSATION_LIMIT]
        entries: list[dict[str, Any]] = [
            {"direction": "out", "at": m.sent_at or m.created_at, "message": MessageSerializer(m).data} for m in sent
        ] + [{"direction": "in", "at": r.received_at, "inbound": InboundSerializer(r).data} for r in received]
        entries.sort(key=lambda e: e["at"])
        for entry in entries:
            entry["at"] = serializers.DateTimeField().to_representation(entry["at"])
        return Response(entries)
