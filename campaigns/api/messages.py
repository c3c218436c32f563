"""Messages: ``POST /api/v1/instances/{id}/messages`` (one message),
``POST /api/v1/messages/batch`` (all or none), the list and one message.

Acceptance is :func:`campaigns.messages.accept` and ``accept_many``; the
quota refusing is a 429 with Retry-After, an idempotency key reused for a
different message a 422."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import StrictCharField, StrictDateTimeField, StrictSerializerMixin, StrictUUIDField
from campaigns.api.base import INSTANCE_ID, MESSAGE_ID, CampaignsView, errors
from campaigns.api.fields import PhoneField, TenantObjectField, scoped_tenant
from campaigns.messages import IdempotencyMismatch, NewMessage, QuotaExceeded, accept, accept_many
from campaigns.models import HOLD, FailureReason, Message, MessageStatus
from instances.models import Instance
from media.models import Media

MAX_TEXT = 4096
MAX_CAPTION = 1024
NEEDS_TEXT = "The text may not be empty or only spaces."


class MessageCreateSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    """``POST /api/v1/instances/{id}/messages``."""

    to = PhoneField()
    text = StrictCharField(
        max_length=MAX_TEXT,
        trim_whitespace=False,
        required=False,
        allow_blank=True,
        help_text=("1-4096 characters, not only spaces; with `media`, the optional caption (at most 1024 characters)."),
    )
    media = TenantObjectField(
        Media, "media", required=False, allow_null=True, help_text="One of your media (POST /api/v1/media)."
    )

    expires_at = StrictDateTimeField(
        required=False,
        allow_null=True,
        help_text="Optional, in the future: not sent after this time; then it fails with reason `expired`.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = "text" in attrs
        text = attrs.setdefault("text", "")
        if attrs.get("media") is None:
            attrs["media"] = None
            if not given:
                raise serializers.ValidationError({"text": ["This field is required."]})
            if text == "":
                raise serializers.ValidationError({"text": ["This field may not be blank."]})
            if not text.strip():
                raise serializers.ValidationError({"text": [NEEDS_TEXT]})
        elif len(text) > MAX_CAPTION:
            raise serializers.ValidationError({"text": [f"A caption may be at most {MAX_CAPTION} characters."]})
        return attrs

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

    instance = StrictUUIDField(help_text="The public id of one of your instances.")
    # Looked up for the whole batch at once (MessageBatchSerializer).
    media = StrictUUIDField(required=False, allow_null=True, help_text="One of your media (POST /api/v1/media).")
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
        fields = super().get_fields()
        limit = int(settings.BLAST_MESSAGE_BATCH_MAX)  # read per request, so tests can override it
        fields["messages"] = MessageBatchItemSerializer(
            many=True,
            allow_empty=False,
            max_length=limit,
            help_text=f"1 to {limit} messages, all valid or none stored.",
        )
        return fields

    def validate_messages(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tenant = scoped_tenant(self.context)
        wanted = {item["instance"] for item in items}
        found = {i.key: i for i in Instance.objects.filter(tenant=tenant, key__in=wanted)}
        wanted_media = {item["media"] for item in items if isinstance(item["media"], uuid.UUID)}
        media = {m.key: m for m in Media.objects.filter(tenant=tenant, key__in=wanted_media)} if wanted_media else {}
        errors: list[dict[str, list[str]]] = [{} for _ in items]
        first_of_key: dict[str, int] = {}
        for index, item in enumerate(items):
            instance = found.get(item["instance"])
            if instance is None:
                errors[index]["instance"] = [f"No instance with id {item['instance']}."]
            item["instance"] = instance
            if item["media"] is not None:
                key = item["media"]
                item["media"] = media.get(key)
                if item["media"] is None:
                    errors[index]["media"] = [f"No media with id {key}."]
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
    media = serializers.SerializerMethodField()
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
            "media",
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

    @extend_schema_field({"type": "string", "format": "uuid", "nullable": True, "description": "Its media, if any."})
    def get_media(self, message: Message) -> str | None:
        return str(message.media.key) if message.media_id is not None else None  # type: ignore[union-attr]

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
    instance = StrictUUIDField(required=False, help_text="Only this instance's messages.")
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    campaign = StrictUUIDField(required=False, help_text="Only this campaign's messages.")


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"


class QuotaThrottled(exceptions.Throttled):
    default_detail = "The monthly message quota is used up."
    extra_detail_singular = "It resets in {wait} second."
    extra_detail_plural = "It resets in {wait} seconds."


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Optional, 1-200 printable ASCII characters, unique per tenant: a request repeated with the same key "
        "answers the message the first one created (header Idempotent-Replayed: true), never a second one."
    ),
)


def idempotency_key(request: Request) -> str:
    """The ``Idempotency-Key`` header, checked; "" when absent."""
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return ""
    key = valid_idempotency_key(raw)
    if key is None:
        raise exceptions.ValidationError({"Idempotency-Key": [IDEMPOTENCY_KEY_ERROR]})
    return key


@contextmanager
def _accepting(items: bool = False) -> Iterator[None]:
    """Acceptance refusals as API errors: the quota is a 429 with
    Retry-After, a reused idempotency key a 422 (naming the batch item)."""
    try:
        yield
    except QuotaExceeded as exc:
        raise QuotaThrottled(wait=exc.retry_after_s, detail=str(exc)) from None
    except IdempotencyMismatch as exc:
        raise UnprocessableEntity(f"Item {exc.index}: {exc}" if items else str(exc)) from None


@extend_schema(tags=["messages"])
class InstanceMessagesView(CampaignsView):
    http_method_names = ["post", "options"]
    serializer_class = MessageCreateSerializer

    @extend_schema(
        operation_id="messages_create",
        summary="Send a message through this instance",
        description=(
            "The message is stored before the answer (202) and sent by the instance's worker while its "
            "session is ready, paced by the instance's sending policy. A message to an opted-out number is "
            "accepted and failed at once (status failed, failure_reason opted_out)."
        ),
        parameters=[INSTANCE_ID, IDEMPOTENCY_KEY],
        request=MessageCreateSerializer,
        responses={202: MessageSerializer, **errors(400, 401, 404, 413, 415, 422, 429)},
    )
    def post(self, request: Request, id: str) -> Response:
        instance = self.get_instance()
        key = idempotency_key(request)
        serializer = MessageCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        with _accepting():
            accepted = accept(
                self.tenant,
                instance,
                serializer.validated_data["to"],
                serializer.validated_data["text"],
                key,
                expires_at=serializer.validated_data.get("expires_at"),
                media=serializer.validated_data["media"],
            )
        message = accepted.message
        message.instance = instance
        response = Response(MessageSerializer(message).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/messages/{message.key}"
        if not accepted.created:
            response["Idempotent-Replayed"] = "true"
        return response


@extend_schema(tags=["messages"])
class MessageBatchView(CampaignsView):
    http_method_names = ["post", "options"]
    serializer_class = MessageBatchSerializer

    @extend_schema(
        operation_id="messages_batch_create",
        summary="Send a batch of messages",
        description=(
            "Up to BLAST_MESSAGE_BATCH_MAX (default 1000) messages, each naming one of your instances, stored "
            "all or none in one transaction (202, answered in request order). Any invalid item is a 400 with "
            "the errors beside the items ({messages: [{}, {field: [messages]}, ...]}), and nothing is stored. "
            "The quota must have room for every new message of the batch (else 429, nothing stored). An item "
            "whose idempotency_key was used before answers the stored message (422 when that was a different "
            "message); a key may appear once per batch. Messages to opted-out numbers are accepted and failed "
            "at once (status failed, failure_reason opted_out)."
        ),
        request=MessageBatchSerializer,
        responses={202: MessageBatchResultSerializer, **errors(400, 401, 413, 415, 422, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = MessageBatchSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        items = [NewMessage(**item) for item in serializer.validated_data["messages"]]
        with _accepting(items=True):
            accepted = accept_many(self.tenant, items)
        messages = [a.message for a in accepted]
        return Response({"messages": MessageSerializer(messages, many=True).data}, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["messages"])
class MessageListView(CampaignsView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = MessageSerializer

    def get_queryset(self) -> QuerySet[Message]:
        queryset = (
            Message.objects.filter(tenant=self.tenant)
            .select_related("instance", "campaign", "media")
            .order_by("-created_at", "-id")
        )
        blank = [n for n in MessageListQuerySerializer().fields if self.request.query_params.get(n, "x").strip() == ""]
        if blank:
            raise exceptions.ValidationError({name: ["This filter may not be blank."] for name in blank})
        query = MessageListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        if "instance" in filters:
            queryset = queryset.filter(instance__key=filters["instance"])
        if "campaign" in filters:
            queryset = queryset.filter(campaign__key=filters["campaign"])
        if "status" in filters:
            queryset = queryset.filter(status=filters["status"])
        return queryset

    @extend_schema(
        operation_id="messages_list",
        summary="List messages, newest first",
        parameters=[MessageListQuerySerializer],
        responses={200: MessageSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["messages"])
class MessageDetailView(CampaignsView):
    http_method_names = ["get", "head", "options"]
    serializer_class = MessageSerializer

    @extend_schema(
        operation_id="messages_retrieve",
        summary="One message",
        parameters=[MESSAGE_ID],
        responses={200: MessageSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        message = self.tenant_object(
            Message.objects.filter(tenant=self.tenant).select_related("instance", "campaign", "media"), id, "message"
        )
        return Response(MessageSerializer(message).data)
