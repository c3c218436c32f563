"""Serializer fields the resources of the campaigns API share: phone
numbers as E.164, and references to the tenant's objects by public id.
Objects that belong to another tenant are treated exactly like objects that
do not exist."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import StrictCharField, canonical_uuid
from campaigns import phones


def scoped_tenant(context: dict[str, Any]) -> Any:
    return context["tenant"]


def parse_uuid(value: Any) -> uuid.UUID | None:
    """``value`` as a public id: a UUID in its canonical form, else None."""
    return canonical_uuid(value)


class PhoneField(StrictCharField):
    """A phone number written by a person, stored as E.164."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", phones.MAX_INPUT)
        kwargs.setdefault(
            "help_text",
            "A valid phone number of its country, with its country code: E.164 (+5511999999999), or another "
            "international form normalised to it.",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return phones.normalise(text, settings_region())
        except phones.InvalidPhone as exc:
            raise serializers.ValidationError(str(exc)) from None


def settings_region() -> str | None:
    return settings.BLAST_DEFAULT_REGION or None


@extend_schema_field({"type": "string", "format": "uuid"})
class TenantObjectField(serializers.Field):  # type: ignore[type-arg]
    """One of the tenant's objects of ``model``, named by its public id."""

    def __init__(self, model: type[Any], noun: str, **kwargs: Any) -> None:
        self.model = model
        self.noun = noun
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        key = parse_uuid(data) if isinstance(data, str) else None
        if key is None:
            raise serializers.ValidationError(f"A {self.noun} id is a UUID.")
        found = self.model.objects.filter(tenant=scoped_tenant(self.context), key=key).first()
        if found is None:
            raise serializers.ValidationError(f"No {self.noun} with id {key}.")
        return found

    def to_representation(self, value: Any) -> str:
        return str(value.key)
