"""Media: ``POST /api/v1/media`` (a file uploaded, or fetched once from a
URL), the list, one media, and its deletion. A tenant sees only its own;
another tenant's media id is a 404."""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import Conflict
from api.parsers import BoundedJSONParser
from api.serializers import StrictCharField, StrictSerializerMixin
from campaigns.api.base import CampaignsView, errors, uuid_parameter
from media import fetch, kinds, store
from media.models import Media
from media.parsers import MediaUploadParser

MEDIA_ID = uuid_parameter("id", "media")


class MediaSerializer(serializers.ModelSerializer[Media]):
    """A stored file, as tenants see it; ``id`` is its public UUID."""

    id = serializers.UUIDField(source="key", read_only=True)
    source_url = serializers.CharField(read_only=True, help_text="Where it was fetched from; empty for an upload.")

    class Meta:
        model = Media
        fields = ["id", "kind", "mime", "filename", "size", "sha256", "source_url", "created_at"]
        read_only_fields = fields


class MediaUploadSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    """The multipart form of an upload."""

    file = serializers.FileField(help_text="The file: an image, a document, audio or video.")
    filename = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=255,
        help_text="The name recipients see; the file's own when absent or blank.",
    )


class MediaByUrlSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    url = StrictCharField(max_length=fetch.MAX_URL, help_text="http:// or https://, a public address; fetched once.")
    filename = StrictCharField(
        required=False, max_length=255, help_text="The name recipients see; the URL's last part by default."
    )


def _refusal(field: str, exc: Exception) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [str(exc)]})


@extend_schema(tags=["media"])
class MediaListView(CampaignsView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = MediaSerializer
    parser_classes = [MediaUploadParser, BoundedJSONParser]

    def get_queryset(self) -> QuerySet[Media]:
        return Media.objects.filter(tenant=self.tenant).order_by("-created_at", "-id")

    @extend_schema(
        operation_id="media_list",
        summary="Your media, newest first",
        responses={200: MediaSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="media_create",
        summary="Store a file to send",
        description=(
            'Either upload the file (multipart/form-data, field `file`) or name a URL (JSON `{"url": ...}`) '
            "that the platform fetches once, now. The type is told from the content, not the name: JPEG, PNG "
            "and WebP images (5 MiB), MP4 and 3GPP video, OGG, MP3, M4A, AAC and AMR audio (16 MiB), PDF and "
            "Office documents (BLAST_MEDIA_MAX_BYTES, 16 MiB by default, caps them all). Anything else, a file "
            "too large, a URL on a private address or one that does not answer 200 is a 400 saying why."
        ),
        request={"multipart/form-data": MediaUploadSerializer, "application/json": MediaByUrlSerializer},
        responses={201: MediaSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        if request.content_type.split(";")[0].strip().lower() == "multipart/form-data":
            if request.FILES.get("file") is None:
                raise exceptions.ValidationError({"file": ["Send the file as the multipart field 'file'."]})
            form = MediaUploadSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            try:
                data = form.validated_data
                media = store.from_upload(self.tenant, data["file"], data.get("filename") or None)
            except kinds.Refused as exc:
                raise _refusal("file", exc) from None
        else:
            serializer = MediaByUrlSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            try:
                media = store.from_url(self.tenant, data["url"], data.get("filename"))
            except (fetch.FetchRefused, kinds.Refused) as exc:
                raise _refusal("url", exc) from None
        response = Response(MediaSerializer(media).data, status=status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/media/{media.key}"
        return response


@extend_schema(tags=["media"])
class MediaDetailView(CampaignsView):
    http_method_names = ["get", "delete", "options"]
    serializer_class = MediaSerializer

    def media(self) -> Media:
        return self.tenant_object(Media.objects.filter(tenant=self.tenant), self.kwargs["id"], "media")

    @extend_schema(
        operation_id="media_retrieve", parameters=[MEDIA_ID], responses={200: MediaSerializer, **errors(401, 404)}
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(MediaSerializer(self.media()).data)

    @extend_schema(
        operation_id="media_destroy",
        summary="Delete a media",
        description="Only while no message names it (409 otherwise: the messages keep what they were sent with).",
        parameters=[MEDIA_ID],
        responses={204: None, **errors(401, 404, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        media = self.media()
        try:
            media.delete()
        except ProtectedError:
            raise Conflict(
                "Messages, campaigns or auto-reply rules name this media; it is kept while they exist."
            ) from None
        media.file.delete(save=False)
        return Response(status=status.HTTP_204_NO_CONTENT)
