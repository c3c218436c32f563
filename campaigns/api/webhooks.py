"""Status webhooks: their settings, signing secret and deliveries
(delivery itself is :mod:`campaigns.webhooks`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictBooleanField, StrictCharField, StrictSerializerMixin, validate_display_name
from campaigns import webhooks
from campaigns.api.base import WEBHOOK_ID, CampaignsView, errors
from campaigns.api.fields import TenantObjectField
from campaigns.models import DeliveryStatus, TenantWebhook, WebhookDelivery, validate_webhook_url
from instances.models import Instance


class WebhookSerializer(StrictSerializerMixin, serializers.ModelSerializer[TenantWebhook]):
    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(
        max_length=100, validators=[validate_display_name], help_text="Printable characters, not only spaces."
    )
    url = StrictCharField(max_length=500, help_text="http:// or https://, a public address.")
    instance = TenantObjectField(
        Instance, "instance", required=False, allow_null=True, help_text="Only this instance's events (one of yours)."
    )
    message_events = StrictBooleanField(required=False, help_text="Message status changes.")
    instance_events = StrictBooleanField(required=False, help_text="Connection events of instances.")
    inbound_events = StrictBooleanField(required=False, help_text="Messages the instances received.")
    enabled = StrictBooleanField(required=False)

    class Meta:
        model = TenantWebhook
        fields = [
            "id",
            "name",
            "url",
            "instance",
            "message_events",
            "instance_events",
            "inbound_events",
            "enabled",
            "created_at",
        ]
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


@extend_schema(tags=["webhooks"])
class WebhookListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = WebhookSerializer

    def get_queryset(self) -> QuerySet[TenantWebhook]:
        return TenantWebhook.objects.filter(tenant=self.tenant).select_related("instance").order_by("name", "id")

    @extend_schema(
        operation_id="webhooks_list",
        summary="List status webhooks",
        responses={200: WebhookSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Create a status webhook; the answer shows its signing secret, once",
        request=WebhookSerializer,
        responses={201: WebhookCreatedSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = TenantWebhook(tenant=self.tenant, **serializer.validated_data)
        secret = webhook.set_secret()
        webhook.save()
        data = WebhookSerializer(webhook).data
        return Response({**data, "secret": secret}, status=status.HTTP_201_CREATED)


@extend_schema(tags=["webhooks"])
class WebhookDetailView(CampaignsView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = WebhookSerializer

    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="One webhook",
        parameters=[WEBHOOK_ID],
        responses={200: WebhookSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(WebhookSerializer(self.webhook()).data)

    @extend_schema(
        operation_id="webhooks_update",
        summary="Change a webhook",
        parameters=[WEBHOOK_ID],
        request=WebhookSerializer,
        responses={200: WebhookSerializer, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        webhook = self.webhook()
        serializer = WebhookSerializer(webhook, data=request.data, partial=True, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(WebhookSerializer(self.webhook()).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook and its delivery records",
        parameters=[WEBHOOK_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, id: str) -> Response:
        self.webhook().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["webhooks"])
class WebhookSecretView(CampaignsView):
    http_method_names = ["post", "options"]
    serializer_class = WebhookCreatedSerializer

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        summary="Replace the signing secret; the answer shows the new one, once",
        parameters=[WEBHOOK_ID],
        request=None,
        responses={200: WebhookCreatedSerializer, **errors(401, 404)},
    )
    def post(self, request: Request, id: str) -> Response:
        webhook = self.webhook()
        secret = webhook.set_secret()
        webhook.save(update_fields=["secret_encrypted"])
        return Response({**WebhookSerializer(webhook).data, "secret": secret})


@extend_schema(tags=["webhooks"])
class WebhookDeliveryListView(CampaignsView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = WebhookDeliverySerializer

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        return WebhookDelivery.objects.filter(webhook=self.webhook()).order_by("-created_at", "-id")

    @extend_schema(
        operation_id="webhooks_deliveries",
        summary="The webhook's deliveries, newest first: status, attempts, last answer",
        parameters=[WEBHOOK_ID],
        responses={200: WebhookDeliverySerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
