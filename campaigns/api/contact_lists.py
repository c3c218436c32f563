"""Contact lists, their contacts and CSV uploads into them
(:mod:`campaigns.contacts`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, ProtectedError, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import Conflict
from api.schema import NO_NUL_PATTERN
from api.serializers import ErrorSerializer, StrictCharField, StrictSerializerMixin, validate_display_name
from campaigns import contacts, phones
from campaigns.api.base import CONTACT_ID, LIST_ID, CampaignsView, errors
from campaigns.api.fields import PhoneField, parse_uuid, scoped_tenant
from campaigns.models import Contact, ContactList
from campaigns.parsers import BoundedMultiPartParser, CsvParser
from campaigns.templating import NAME

MAX_FIELD_VALUE = 1000
MAX_CONTACT_FIELDS = 50


class ContactListSerializer(StrictSerializerMixin, serializers.ModelSerializer[ContactList]):
    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(
        max_length=200,
        validators=[validate_display_name],
        help_text="Unique within the tenant; printable characters, not only spaces.",
    )
    fields = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Custom fields, from the uploads' headers."
    )
    contacts = serializers.SerializerMethodField(help_text="How many contacts the list holds.")

    class Meta:
        model = ContactList
        fields = ["id", "name", "fields", "contacts", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[Any] = []

    def get_contacts(self, contact_list: ContactList) -> int:
        counted = getattr(contact_list, "contact_count", None)
        return int(counted if counted is not None else contact_list.contacts.count())

    def validate_name(self, value: str) -> str:
        clash = ContactList.objects.filter(tenant=scoped_tenant(self.context), name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("You already have a contact list with this name.")
        return value


def validate_field_values(value: Any) -> dict[str, str]:
    """Custom fields of one contact: names as template fields, text values."""
    if not isinstance(value, dict):
        raise serializers.ValidationError("Custom fields are an object of names to text values.")
    if len(value) > MAX_CONTACT_FIELDS:
        raise serializers.ValidationError(f"At most {MAX_CONTACT_FIELDS} custom fields.")
    cleaned: dict[str, str] = {}
    for name, item in value.items():
        key = str(name).strip().lower()
        if not NAME.match(key) or key == "phone":
            raise serializers.ValidationError(
                f"'{str(name)[:40]}' is not a field name (letters, digits and _, starting with a letter or _; "
                "not 'phone')."
            )
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise serializers.ValidationError(f"The value of '{key}' must be text.")
        text = str(item).strip()
        if len(text) > MAX_FIELD_VALUE:
            raise serializers.ValidationError(f"The value of '{key}' is longer than {MAX_FIELD_VALUE} characters.")
        if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise serializers.ValidationError(f"The value of '{key}' holds characters that are not text.")
        cleaned[key] = text
    return cleaned


FIELD_VALUES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string", "maxLength": MAX_FIELD_VALUE, "pattern": NO_NUL_PATTERN}, {"type": "number"}]
    },
    "maxProperties": MAX_CONTACT_FIELDS,
    "description": (
        "Custom fields: name -> text (a number is written as text). Names as template fields: a letter or _, "
        "then letters, digits or _, not 'phone'; lower-cased."
    ),
}


@extend_schema_field(FIELD_VALUES_SCHEMA)
class FieldValuesField(serializers.JSONField):
    """A contact's custom fields (:func:`validate_field_values`)."""


class ContactSerializer(StrictSerializerMixin, serializers.ModelSerializer[Contact]):
    """A contact of a list; ``id`` is its public UUID."""

    id = serializers.UUIDField(source="key", read_only=True)
    phone = PhoneField()
    fields = FieldValuesField(required=False, allow_null=True)

    class Meta:
        model = Contact
        fields = ["id", "phone", "fields", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        validators: list[Any] = []

    def validate_fields(self, value: Any) -> dict[str, str]:
        return validate_field_values(value if value is not None else {})


class UploadResultSerializer(serializers.Serializer[Any]):
    """What a CSV upload did (campaigns.contacts.ImportResult)."""

    class RowErrorSerializer(serializers.Serializer[Any]):
        row = serializers.IntegerField(help_text="Row number as a spreadsheet shows it (the header is row 1).")
        message = serializers.CharField()

    rows = serializers.IntegerField(help_text="Data rows read.")
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Rows merged into an earlier row of the file.")
    invalid = serializers.IntegerField(help_text="Rows refused (see errors).")
    errors = RowErrorSerializer(many=True)
    errors_truncated = serializers.BooleanField(help_text="More rows were refused than errors lists.")
    fields = serializers.ListField(child=serializers.CharField())
    contacts = serializers.IntegerField(help_text="The list's size after the upload.")


def _lists(view: CampaignsView) -> QuerySet[ContactList]:
    return ContactList.objects.filter(tenant=view.tenant).annotate(contact_count=Count("contacts"))


@extend_schema(tags=["contact lists"])
class ContactListListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = ContactListSerializer

    def get_queryset(self) -> QuerySet[ContactList]:
        return _lists(self).order_by("-created_at", "-id")

    @extend_schema(
        operation_id="contact_lists_list",
        summary="List contact lists",
        responses={200: ContactListSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="contact_lists_create",
        summary="Create an empty contact list (fill it with POST .../upload)",
        request=ContactListSerializer,
        responses={201: ContactListSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                contact_list = serializer.save(tenant=self.tenant)
        except IntegrityError:
            raise exceptions.ValidationError({"name": ["You already have a contact list with this name."]}) from None
        return Response(ContactListSerializer(contact_list).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["contact lists"])
class ContactListDetailView(CampaignsView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = ContactListSerializer

    @extend_schema(
        operation_id="contact_lists_retrieve",
        summary="One contact list",
        parameters=[LIST_ID],
        responses={200: ContactListSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(ContactListSerializer(self.tenant_object(_lists(self), id, "contact list")).data)

    @extend_schema(
        operation_id="contact_lists_update",
        summary="Rename a contact list",
        parameters=[LIST_ID],
        request=ContactListSerializer,
        responses={200: ContactListSerializer, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        contact_list = self.tenant_object(_lists(self), id, "contact list")
        serializer = ContactListSerializer(
            contact_list, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                serializer.save(updated_at=timezone.now())
        except IntegrityError:
            raise exceptions.ValidationError({"name": ["You already have a contact list with this name."]}) from None
        return Response(ContactListSerializer(self.tenant_object(_lists(self), id, "contact list")).data)

    @extend_schema(
        operation_id="contact_lists_destroy",
        summary="Delete a contact list and its contacts (not while a campaign uses it)",
        parameters=[LIST_ID],
        responses={204: None, **errors(401, 404, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        contact_list = self.contact_list()
        try:
            contact_list.delete()
        except ProtectedError:
            names = ", ".join(sorted(contact_list.campaigns.values_list("name", flat=True))[:5])
            raise Conflict(f"Campaigns use this contact list ({names}): delete them first.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


REGION_HELP = "ISO country code in capitals (BR, US, ...): the country of numbers written without a country code."


@extend_schema_field({"type": "string", "enum": list(phones.REGIONS)})
class RegionField(serializers.CharField):
    """A region phonenumbers knows, as its ISO code in capitals."""


class UploadFormSerializer(serializers.Serializer[Any]):
    """The multipart form of an upload (the view reads it: see its checks)."""

    file = serializers.FileField(help_text="The CSV file.")
    region = RegionField(required=False, help_text=REGION_HELP)


@extend_schema(tags=["contact lists"])
class ContactListUploadView(CampaignsView):
    """``POST /contact-lists/{id}/upload``: a CSV file into the list.

    A sync view, like the admin's upload, and that is what keeps a long
    import from holding anyone else: Django's ASGI handler gives every
    request a thread-sensitive context of its own (asgiref's
    ``ThreadSensitiveContext``), so the sync code of each request runs in a
    thread of that request, never on the event loop nor in a thread that
    other requests wait for. What remains shared is the interpreter lock,
    and an import is bounded work in short steps (``campaigns.contacts``),
    one import at a time per process, so the event loop and the other
    requests' threads get their turns while it runs. An async view handing
    the work to ``sync_to_async(thread_sensitive=False)`` would gain nothing
    on that, and DRF's views are sync. tests/campaigns/test_upload_flood.py
    measures ``/health/live`` and the API answering during uploads.
    """

    http_method_names = ["post", "options"]
    parser_classes = [BoundedMultiPartParser, CsvParser]
    serializer_class = UploadResultSerializer

    @extend_schema(
        operation_id="contact_lists_upload",
        summary="Upload contacts from a CSV file",
        description=(
            "The file as a multipart form field `file`, or as the body with `Content-Type: text/csv`. A header "
            "row with a `phone` column and any custom fields, then one row per contact. Rows that cannot be "
            "imported are reported (row number, reason) and skipped; the others are imported, numbers "
            "normalised to E.164 and duplicates merged. A file that cannot be used at all is a 400 on `file`. "
            "`region` (query parameter or form field, e.g. BR) reads numbers written without a country code."
        ),
        parameters=[
            LIST_ID,
            OpenApiParameter("region", OpenApiTypes.STR, enum=phones.REGIONS, description=REGION_HELP),
        ],
        request={"multipart/form-data": UploadFormSerializer, "text/csv": OpenApiTypes.STR},
        responses={
            200: UploadResultSerializer,
            **errors(400, 401, 404, 413, 415),
            429: OpenApiResponse(
                ErrorSerializer,
                description="The server is importing another upload; Retry-After says when to try again.",
            ),
        },
    )
    def post(self, request: Request, id: str) -> Response:
        contact_list = self.contact_list()
        as_body = request.content_type.split(";")[0].strip().lower() == CsvParser.media_type
        if isinstance(request.data, bytes) or as_body:
            data = request.data if isinstance(request.data, bytes) else b""  # an empty body is not parsed
            region = request.query_params.get("region")
        else:
            upload = request.FILES.get("file") if hasattr(request, "FILES") else None
            if upload is None:
                raise exceptions.ValidationError(
                    {"file": ["Send the CSV file as the multipart field 'file', or as a text/csv body."]}
                )
            limit = int(settings.BLAST_CSV_MAX_BYTES)
            if upload.size is not None and upload.size > limit:
                raise exceptions.ValidationError({"file": [f"The file is {upload.size} bytes; at most {limit}."]})
            data = upload.read()
            region = request.data.get("region", request.query_params.get("region"))
        if region is not None and region not in phones.REGIONS:
            shown = str(region)[:10]
            raise exceptions.ValidationError({"region": [f"'{shown}' is not a country code such as BR or US."]})
        try:
            result = contacts.import_csv(contact_list, data, region)
        except contacts.CsvRejected as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        except contacts.ImportsBusy as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
        return Response(UploadResultSerializer(result.as_dict()).data)


@extend_schema(tags=["contact lists"])
class ContactListContactsView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = ContactSerializer

    def get_queryset(self) -> QuerySet[Contact]:
        return Contact.objects.filter(contact_list=self.contact_list()).order_by("id")

    @extend_schema(
        operation_id="contacts_list",
        summary="The contacts of a list, in upload order",
        parameters=[LIST_ID],
        responses={200: ContactSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="contacts_create",
        summary="Add one contact (merged into the existing one with the same number)",
        parameters=[LIST_ID],
        request=ContactSerializer,
        responses={201: ContactSerializer, 200: ContactSerializer, **errors(400, 401, 404, 409, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        contact_list = self.contact_list()
        serializer = ContactSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        phone = serializer.validated_data["phone"]
        fields = serializer.validated_data.get("fields") or {}
        try:
            created = contacts.upsert_contact(contact_list, phone, fields)
        except contacts.CsvRejected as exc:
            raise Conflict(str(exc)) from None
        contact = Contact.objects.get(contact_list=contact_list, phone=phone)
        return Response(
            ContactSerializer(contact).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


@extend_schema(tags=["contact lists"])
class ContactDetailView(CampaignsView):
    http_method_names = ["get", "delete", "head", "options"]
    serializer_class = ContactSerializer

    def contact(self) -> Contact:
        contact_list = self.contact_list()
        key = parse_uuid(self.kwargs["contact_id"])
        found = Contact.objects.filter(contact_list=contact_list, key=key).first() if key is not None else None
        if found is None:
            raise exceptions.NotFound("No contact with this id in this list.")
        return found

    @extend_schema(
        operation_id="contacts_retrieve",
        summary="One contact",
        parameters=[LIST_ID, CONTACT_ID],
        responses={200: ContactSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str, contact_id: str) -> Response:
        return Response(ContactSerializer(self.contact()).data)

    @extend_schema(
        operation_id="contacts_destroy",
        summary="Remove a contact from the list",
        parameters=[LIST_ID, CONTACT_ID],
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, id: str, contact_id: str) -> Response:
        self.contact().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
