"""The tenant API of messages, contact lists, campaigns, opt-outs, the
quota and status webhooks (routes in campaigns.api_urls).

Views only translate HTTP to calls into the app's modules. They build on the
instances API's ``TenantView`` (API-key authentication, tenant scoping,
pagination, JSON errors): every query starts from the key's tenant, so
another tenant's object is a 404 exactly like a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, ProtectedError, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, renderers, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.exceptions import Conflict
from api.serializers import ErrorSerializer
from api.views import TenantView
from campaigns import conf, contacts, lifecycle, optouts, phones, quota, reports, states
from campaigns.messages import IdempotencyMismatch, NewMessage, QuotaExceeded, accept, accept_many
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactList,
    Message,
    OptOut,
    OptOutSource,
    TenantWebhook,
    WebhookDelivery,
)
from campaigns.parsers import BoundedMultiPartParser, CsvParser
from campaigns.serializers import (
    IDEMPOTENCY_KEY_ERROR,
    CampaignRenameSerializer,
    CampaignSerializer,
    ContactListSerializer,
    ContactSerializer,
    MessageBatchResultSerializer,
    MessageBatchSerializer,
    MessageCreateSerializer,
    MessageListQuerySerializer,
    MessageSerializer,
    OptOutSerializer,
    QuotaSerializer,
    ReportSerializer,
    UploadResultSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
    valid_idempotency_key,
)

ERROR_DESCRIPTIONS = {
    400: "Invalid input: field errors ({field: [messages]}) or {detail}.",
    401: "Missing, invalid or revoked API key.",
    404: "No such object for this key's tenant (another tenant's is a 404 too).",
    409: "The action does not apply in the object's current state (the message says why).",
    413: "The request body is too large.",
    415: "Unsupported body type.",
    422: "The Idempotency-Key was used for a different message.",
    429: "The tenant's monthly message quota is used up; Retry-After says when it resets.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses for ``extend_schema(responses=...)``."""
    return {
        code: OpenApiResponse(
            OpenApiTypes.OBJECT if code == 400 else ErrorSerializer, description=ERROR_DESCRIPTIONS[code]
        )
        for code in codes
    }


def uuid_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=f"The {what}'s public id.")


INSTANCE_ID = uuid_parameter("id", "instance")
MESSAGE_ID = uuid_parameter("id", "message")
LIST_ID = uuid_parameter("id", "contact list")
CAMPAIGN_ID = uuid_parameter("id", "campaign")
WEBHOOK_ID = uuid_parameter("id", "webhook")
CONTACT_ID = OpenApiParameter("contact_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The contact's id.")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Optional, 1-200 printable ASCII characters, unique per tenant: a request repeated with the same key "
        "answers the message the first one created (header Idempotent-Replayed: true), never a second one."
    ),
)


class UnprocessableEntity(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be processed."
    default_code = "unprocessable"


class QuotaThrottled(exceptions.Throttled):
    default_detail = "The monthly message quota is used up."
    extra_detail_singular = "It resets in {wait} second."
    extra_detail_plural = "It resets in {wait} seconds."


class CampaignsView(TenantView):
    """A tenant view with lookups of the app's objects by public id."""

    def tenant_object(self, queryset: QuerySet[Any], raw: object, noun: str) -> Any:
        """The object of ``queryset`` (already scoped) with public id ``raw``, or 404."""
        key = _uuid(raw)
        found = queryset.filter(key=key).first() if key is not None else None
        if found is None:
            raise exceptions.NotFound(f"No {noun} with this id.")
        return found

    def campaign(self) -> Campaign:
        return self.tenant_object(Campaign.objects.filter(tenant=self.tenant), self.kwargs["id"], "campaign")

    def contact_list(self) -> ContactList:
        return self.tenant_object(ContactList.objects.filter(tenant=self.tenant), self.kwargs["id"], "contact list")

    def webhook(self) -> TenantWebhook:
        return self.tenant_object(
            TenantWebhook.objects.filter(tenant=self.tenant).select_related("instance"), self.kwargs["id"], "webhook"
        )


def _uuid(raw: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


# --- messages ---------------------------------------------------------------------------------


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
            .select_related("instance", "campaign")
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
            Message.objects.filter(tenant=self.tenant).select_related("instance", "campaign"), id, "message"
        )
        return Response(MessageSerializer(message).data)


# --- contact lists -------------------------------------------------------------------------------


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


class UploadFormSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(help_text="The CSV file.")
    region = serializers.CharField(required=False, help_text="Country of numbers written without a country code.")


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
            OpenApiParameter("region", OpenApiTypes.STR, description="ISO country code, e.g. BR."),
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
            region = request.query_params.get("region", "")
        else:
            upload = request.FILES.get("file") if hasattr(request, "FILES") else None
            if upload is None:
                raise exceptions.ValidationError(
                    {"file": ["Send the CSV file as the multipart field 'file', or as a text/csv body."]}
                )
            limit = int(conf.get("BLAST_CSV_MAX_BYTES"))
            if upload.size is not None and upload.size > limit:
                raise exceptions.ValidationError({"file": [f"The file is {upload.size} bytes; at most {limit}."]})
            data = upload.read()
            region = request.data.get("region") or request.query_params.get("region", "")
        region = str(region).strip()
        if region and not phones.is_region(region):
            raise exceptions.ValidationError({"region": [f"'{region[:10]}' is not a country code such as BR or US."]})
        try:
            result = contacts.import_csv(contact_list, data, region or None)
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
        raw = str(self.kwargs["contact_id"])
        found = (
            Contact.objects.filter(contact_list=contact_list, pk=int(raw)).first()
            if raw.isascii() and raw.isdigit() and len(raw) < 19
            else None
        )
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


# --- campaigns ---------------------------------------------------------------------------------


def _campaigns(view: CampaignsView) -> QuerySet[Campaign]:
    return Campaign.objects.filter(tenant=view.tenant).select_related("contact_list")


@extend_schema(tags=["campaigns"])
class CampaignListView(CampaignsView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = CampaignSerializer

    def get_queryset(self) -> QuerySet[Campaign]:
        queryset = _campaigns(self).prefetch_related("instances").order_by("-created_at", "-id")
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in CampaignStatus.values:
                raise exceptions.ValidationError({"status": [f"'{wanted[:20]}' is not a campaign status."]})
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(
        operation_id="campaigns_list",
        summary="List campaigns, newest first",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=CampaignStatus.values)],
        responses={200: CampaignSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a campaign (a draft: POST .../start starts it)",
        request=CampaignSerializer,
        responses={201: CampaignSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            campaign = serializer.save(tenant=self.tenant)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["campaigns"])
class CampaignDetailView(CampaignsView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = CampaignSerializer

    @extend_schema(
        operation_id="campaigns_retrieve",
        summary="One campaign",
        parameters=[CAMPAIGN_ID],
        responses={200: CampaignSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(CampaignSerializer(self.campaign()).data)

    @extend_schema(
        operation_id="campaigns_update",
        summary="Change a draft campaign (only the name once it has started)",
        parameters=[CAMPAIGN_ID],
        request=CampaignSerializer,
        responses={200: CampaignSerializer, **errors(400, 401, 404, 409, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        with transaction.atomic():
            campaign = self.tenant_object(
                Campaign.objects.select_for_update().filter(tenant=self.tenant), id, "campaign"
            )
            context = self.get_serializer_context()
            if states.editable(campaign.status):
                serializer: serializers.Serializer[Any] = CampaignSerializer(
                    campaign, data=request.data, partial=True, context=context
                )
                serializer.is_valid(raise_exception=True)
                serializer.save()
            else:
                if isinstance(request.data, dict) and set(request.data) - {"name"}:
                    raise Conflict(f"The campaign is {campaign.status}: only its name can change.")
                serializer = CampaignRenameSerializer(data=request.data, partial=True, context=context)
                serializer.is_valid(raise_exception=True)
                if "name" in serializer.validated_data:
                    campaign.name = serializer.validated_data["name"]
                    campaign.updated_at = timezone.now()
                    campaign.save(update_fields=["name", "updated_at"])
        return Response(CampaignSerializer(self.campaign()).data)

    @extend_schema(
        operation_id="campaigns_destroy",
        summary="Delete a campaign and its messages (draft, completed or cancelled only)",
        parameters=[CAMPAIGN_ID],
        responses={204: None, **errors(401, 404, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        with transaction.atomic():
            campaign = self.tenant_object(
                Campaign.objects.select_for_update().filter(tenant=self.tenant), id, "campaign"
            )
            if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
                raise Conflict(f"The campaign is {campaign.status}: cancel it before deleting it.")
            campaign.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


ACTION_SUMMARIES = {
    "start": "Start a draft campaign (scheduled when its start time is ahead)",
    "pause": "Pause a running campaign: nothing more of it is sent",
    "resume": "Resume a paused campaign",
    "cancel": "Cancel a campaign for good: its unsent messages fail with reason cancelled",
}
ACTIONS = {"start": lifecycle.start, "pause": lifecycle.pause, "resume": lifecycle.resume, "cancel": lifecycle.cancel}


class CampaignActionView(CampaignsView):
    """``POST /api/v1/campaigns/{id}/<action>``: one lifecycle move; 409 when
    the campaign's status does not allow it."""

    http_method_names = ["post", "options"]
    serializer_class = CampaignSerializer
    action = "start"

    def post(self, request: Request, id: str) -> Response:
        campaign = self.campaign()
        try:
            ACTIONS[self.action](campaign.pk, self.client.actor)
        except states.IllegalTransition as exc:
            raise Conflict(str(exc)) from None
        return Response(CampaignSerializer(self.campaign()).data)


def _action_view(name: str) -> type[CampaignActionView]:
    schema = extend_schema(
        tags=["campaigns"],
        operation_id=f"campaigns_{name}",
        summary=ACTION_SUMMARIES[name],
        parameters=[CAMPAIGN_ID],
        request=None,
        responses={200: CampaignSerializer, **errors(401, 404, 409)},
    )

    class View(CampaignActionView):
        action = name

        @schema
        def post(self, request: Request, id: str) -> Response:
            return super().post(request, id)

    View.__name__ = View.__qualname__ = f"Campaign{name.title()}View"
    return View


CampaignStartView = _action_view("start")
CampaignPauseView = _action_view("pause")
CampaignResumeView = _action_view("resume")
CampaignCancelView = _action_view("cancel")


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else str(data or "").encode()


def csv_response(campaign: Campaign) -> StreamingHttpResponse:
    response = StreamingHttpResponse(reports.csv_lines(campaign), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.key}.csv"'
    return response


class JsonErrorsMixin:
    """Errors are JSON, whatever format was asked for (as the QR view does)."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(response, "status_code", 200) >= 400 and getattr(request, "accepted_renderer", None):
            if request.accepted_renderer.format != "json":
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


@extend_schema(tags=["campaigns"])
class CampaignReportView(JsonErrorsMixin, CampaignsView):
    http_method_names = ["get", "head", "options"]
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]
    serializer_class = ReportSerializer

    @extend_schema(
        operation_id="campaigns_report",
        summary="Counts by status, progress, throughput, failures by reason",
        description="`?format=csv` (or GET .../report.csv) answers every message of the campaign as CSV.",
        parameters=[
            CAMPAIGN_ID,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="What to answer."),
        ],
        responses={
            (200, "application/json"): ReportSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **errors(401, 404),
        },
    )
    def get(self, request: Request, id: str) -> Any:
        campaign = self.campaign()
        if request.accepted_renderer.format == "csv":
            return csv_response(campaign)
        return Response(ReportSerializer(reports.report(campaign, timezone.now())).data)


@extend_schema(tags=["campaigns"])
class CampaignReportCsvView(JsonErrorsMixin, CampaignsView):
    http_method_names = ["get", "head", "options"]
    renderer_classes = [CSVRenderer, renderers.JSONRenderer]
    serializer_class = ReportSerializer

    @extend_schema(
        operation_id="campaigns_report_csv",
        summary="Every message of the campaign as CSV",
        parameters=[CAMPAIGN_ID],
        responses={(200, "text/csv"): OpenApiTypes.STR, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Any:
        return csv_response(self.campaign())


# --- opt-outs and quota --------------------------------------------------------------------------


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


# --- webhooks ----------------------------------------------------------------------------------


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
