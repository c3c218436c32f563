"""OpenAPI descriptions drf-spectacular cannot infer: the authentication
schemes and the strict request bodies (extensions).

Imported by ``ApiConfig.ready`` so that drf-spectacular finds them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key: `Authorization: Bearer blast_<prefix>_<secret>`.",
        }


class AccessTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.authentication.QueryTokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": (
                "The seed's way: a tenant API key in the query string. `Authorization: Bearer <key>` is accepted too."
            ),
        }


class StrictSerializerScheme(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """Bodies of strict serializers (``StrictSerializerMixin``) admit no other keys.

    The API refuses an unknown or read-only key by name (400), so the
    request schema says ``additionalProperties: false``: a client's own
    validator then refuses what the server would."""

    target_class = "api.serializers.StrictSerializerMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
            request_bounds(self.target, schema)
        return schema


# DRF refuses NUL characters in every text field (ProhibitNullCharactersValidator).
NO_NUL_PATTERN = r"^[^\u0000]*$"


def request_bounds(serializer: Any, schema: dict[str, Any]) -> None:
    """What DRF enforces on a request body and drf-spectacular leaves out:
    the size bounds of nested lists (``many=True``) and the refusal of NUL
    characters in text."""
    fields = serializer.fields if hasattr(serializer, "fields") else {}
    properties = schema.get("properties", {})
    for name, field in fields.items():
        prop = properties.get(name)
        if prop is None or field.read_only:
            continue
        if isinstance(field, serializers.ListSerializer):
            if not field.allow_empty:
                prop.setdefault("minItems", max(1, field.min_length or 0))
            elif field.min_length:
                prop.setdefault("minItems", field.min_length)
            if field.max_length is not None:
                prop.setdefault("maxItems", field.max_length)
        if isinstance(field, serializers.CharField) and prop.get("type") == "string":
            if not any(key in prop for key in ("pattern", "enum", "format")):
                prop["pattern"] = NO_NUL_PATTERN
