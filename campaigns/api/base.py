"""What the views of the campaigns API share: the base view with the
tenant-scoped lookups by public id, the documented error responses and the
path parameters."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions

from api.views import TenantView
from api.views import errors as api_errors
from campaigns.api.fields import parse_uuid
from campaigns.models import Campaign, ContactList, TenantWebhook

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


def errors(*codes: int) -> dict[Any, OpenApiResponse]:
    """Documented error responses for ``extend_schema(responses=...)``: JSON,
    also on the views that answer CSV when all goes well."""
    return api_errors(*codes, descriptions=ERROR_DESCRIPTIONS)


def uuid_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=f"The {what}'s public id.")


INSTANCE_ID = uuid_parameter("id", "instance")
MESSAGE_ID = uuid_parameter("id", "message")
LIST_ID = uuid_parameter("id", "contact list")
CAMPAIGN_ID = uuid_parameter("id", "campaign")
WEBHOOK_ID = uuid_parameter("id", "webhook")
CONTACT_ID = uuid_parameter("contact_id", "contact")


class CampaignsView(TenantView):
    """A tenant view with lookups of the app's objects by public id."""

    def tenant_object(self, queryset: QuerySet[Any], raw: object, noun: str) -> Any:
        """The object of ``queryset`` (already scoped) with public id ``raw``, or 404."""
        key = parse_uuid(raw)
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
