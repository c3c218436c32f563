"""Auto-reply rules: ``/api/v1/auto-replies`` (what they do is
:mod:`campaigns.autoreplies`). A rule belongs to one of the tenant's
instances; another tenant's rule, instance or media is a 404 or a field
error naming it, exactly like one that does not exist."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializerMixin,
    StrictUUIDField,
    validate_display_name,
)
from campaigns import autoreplies
from campaigns.api.base import CampaignsView, errors, uuid_parameter
from campaigns.api.fields import TenantObjectField
from campaigns.api.messages import MAX_CAPTION, MAX_TEXT
from campaigns.models import AutoReplyRule, ReplyMatch
from instances.models import Instance
from media.models import Media

RULE_ID = uuid_parameter("id", "auto-reply rule")
MAX_COOLDOWN_S = 30 * 24 * 3600


class AutoReplySerializer(StrictSerializerMixin, serializers.ModelSerializer[AutoReplyRule]):
    id = serializers.UUIDField(source="key", read_only=True)
    instance = TenantObjectField(Instance, "instance", help_text="The instance whose inbound messages it answers.")
    name = StrictCharField(
        max_length=100, validators=[validate_display_name], help_text="Printable characters, not only spaces."
    )
    match = serializers.ChoiceField(
        choices=ReplyMatch.choices,
        required=False,
        help_text="exact: the whole message; contains: anywhere in it; regex: a regular expression. Case is ignored.",
    )
    pattern = StrictCharField(
        max_length=autoreplies.MAX_PATTERN, trim_whitespace=False, help_text="The word, phrase or expression."
    )
    reply_text = StrictCharField(
        max_length=MAX_TEXT,
        trim_whitespace=False,
        required=False,
        allow_blank=True,
        help_text="The reply; with reply_media, its optional caption (at most 1024 characters).",
    )
    reply_media = TenantObjectField(
        Media, "media", required=False, allow_null=True, help_text="One of your media (POST /api/v1/media)."
    )
    cooldown_s = StrictIntegerField(
        required=False,
        min_value=10,
        max_value=MAX_COOLDOWN_S,
        help_text="After an automatic reply to a contact, the instance answers that contact automatically "
        "again only after this many seconds (default BLAST_AUTO_REPLY_COOLDOWN_S, 3600).",
    )
    priority = StrictIntegerField(
        required=False, min_value=0, max_value=10_000, help_text="Rules are tried lowest first (default 100)."
    )
    enabled = StrictBooleanField(required=False)

    class Meta:
        model = AutoReplyRule
        fields = ["id", *autoreplies.RULE_FIELDS, "created_at"]
        read_only_fields = ["created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        match = attrs.get("match", current.match if current else ReplyMatch.CONTAINS)
        pattern = attrs.get("pattern", current.pattern if current else "")
        problem = autoreplies.pattern_problem(match, pattern)
        if problem:
            raise serializers.ValidationError({"pattern": [problem]})
        text = attrs.get("reply_text", current.reply_text if current else "")
        media = attrs["reply_media"] if "reply_media" in attrs else (current.reply_media if current else None)
        if media is None and not text.strip():
            raise serializers.ValidationError({"reply_text": ["Give a reply text, a reply_media, or both."]})
        if media is not None and len(text) > MAX_CAPTION:
            raise serializers.ValidationError({"reply_text": [f"A caption may be at most {MAX_CAPTION} characters."]})
        return attrs


class AutoReplyQuerySerializer(serializers.Serializer[Any]):
    instance = StrictUUIDField(required=False, help_text="Only this instance's rules.")


@extend_schema(tags=["auto-replies"])
class AutoReplyListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = AutoReplySerializer

    def get_queryset(self) -> QuerySet[AutoReplyRule]:
        if self.request.query_params.get("instance", "x").strip() == "":
            raise exceptions.ValidationError({"instance": ["This filter may not be blank."]})
        query = AutoReplyQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        queryset = AutoReplyRule.objects.filter(tenant=self.tenant).select_related("instance", "reply_media")
        if "instance" in query.validated_data:
            queryset = queryset.filter(instance__key=query.validated_data["instance"])
        return queryset.order_by("instance_id", "priority", "id")

    @extend_schema(
        operation_id="auto_replies_list",
        summary="List auto-reply rules",
        parameters=[AutoReplyQuerySerializer],
        responses={200: AutoReplySerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="auto_replies_create",
        summary="Create an auto-reply rule for one of your instances",
        request=AutoReplySerializer,
        responses={201: AutoReplySerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = AutoReplyRule(tenant=self.tenant, **serializer.validated_data)
        if "cooldown_s" not in serializer.validated_data:
            rule.cooldown_s = int(settings.BLAST_AUTO_REPLY_COOLDOWN_S)
        rule.save()
        return Response(AutoReplySerializer(rule).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["auto-replies"])
class AutoReplyDetailView(CampaignsView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = AutoReplySerializer

    def rule(self) -> AutoReplyRule:
        rules = AutoReplyRule.objects.filter(tenant=self.tenant).select_related("instance", "reply_media")
        return self.tenant_object(rules, self.kwargs["id"], "auto-reply rule")

    @extend_schema(
        operation_id="auto_replies_retrieve",
        summary="One auto-reply rule",
        parameters=[RULE_ID],
        responses={200: AutoReplySerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(AutoReplySerializer(self.rule()).data)

    @extend_schema(
        operation_id="auto_replies_update",
        summary="Change an auto-reply rule",
        parameters=[RULE_ID],
        request=AutoReplySerializer,
        responses={200: AutoReplySerializer, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        serializer = AutoReplySerializer(
            self.rule(), data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(AutoReplySerializer(self.rule()).data)

    @extend_schema(
        operation_id="auto_replies_destroy",
        summary="Delete an auto-reply rule",
        parameters=[RULE_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, id: str) -> Response:
        self.rule().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
