"""JSON shapes of the tenant API, and the validation of what clients send.

Every writable field is validated with a field-level message; fields a
client may not write (or that do not exist) are refused by name instead of
being silently ignored. An instance's token never appears in any shape.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from instances import commands
from instances.models import (
    REASON_CHOICES,
    BreakerState,
    ConnectionEvent,
    EventKind,
    Gateway,
    Instance,
    PairState,
    Status,
    validate_pairing_phone,
)

MAX_GATEWAY_ID = 2**63 - 1


class StrictSerializerMixin:
    """Refuse keys the serializer does not accept, one message per key."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}  # type: ignore[attr-defined]
            errors = {}
            for name in data:
                if name in writable:
                    continue
                known = name in self.fields  # type: ignore[attr-defined]
                errors[str(name)] = ["This field is read-only." if known else "Unknown field."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of converting them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


# The fields below take a JSON value exactly as the OpenAPI schema types it:
# DRF's own would also read "1.5" as a number, "yes" as true, an integer as a
# UUID or a bare date as a date-time, which the schema does not admit.

CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 3339 date-time, the schema's `format: date-time`: seconds and an offset.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def canonical_uuid(value: Any) -> uuid.UUID | None:
    """``value`` as a UUID when it is one in the canonical 8-4-4-4-12 form, else None."""
    if not isinstance(value, str) or not CANONICAL_UUID.fullmatch(value):
        return None
    return uuid.UUID(value)


class StrictUUIDField(serializers.UUIDField):
    """A UUID written in its canonical form, as a string."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        key = canonical_uuid(data)
        if key is None:
            self.fail("invalid", value=str(data)[:40])
        return key


class StrictFloatField(serializers.FloatField):
    """A JSON number (not a string, not a boolean)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (not a string, a boolean or a number with a fraction)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """true or false (not 1, "yes" or "true")."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=str(data)[:20])
        return data


class StrictDateTimeField(serializers.DateTimeField):
    """An RFC 3339 date-time (``2030-01-01T09:00:00Z``, offset required)."""

    def to_internal_value(self, value: Any) -> Any:
        if not isinstance(value, str) or not RFC3339.fullmatch(value):
            self.fail("invalid", format="YYYY-MM-DDThh:mm:ss[.ffffff]Z or ±hh:mm")
        return super().to_internal_value(value.upper())  # RFC 3339 allows "t" and "z"


def validate_display_name(value: str) -> str:
    """A name people read: printable text, no control or format characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("The name is not valid Unicode text.") from None
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in value):
        raise serializers.ValidationError("The name may not contain control or invisible characters.")
    return value


REASON_SCHEMA = {
    "type": "string",
    "enum": ["", *(value for value, _ in REASON_CHOICES)],
    "description": "Why the session last ended (PROTOCOL.md section 4); empty if it never did.",
}


@extend_schema_field(REASON_SCHEMA)
class ReasonField(serializers.CharField):
    """A reason of ``instances.reasons`` or the empty string, read-only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_blank=True, **kwargs)


# --- gateways ---------------------------------------------------------------


class GatewaySerializer(serializers.ModelSerializer[Gateway]):
    """A gateway and whether it answers (``down``: its instances wait for its probe)."""

    class Meta:
        model = Gateway
        fields = ["id", "name", "state", "state_changed_at", "down_since", "down_reason", "next_probe_at"]
        read_only_fields = fields


@extend_schema_field({"type": "integer", "minimum": 1, "format": "int64"})
class GatewayField(serializers.Field):  # type: ignore[type-arg]
    """A gateway chosen by id from the enabled gateways."""

    default_error_messages = {
        "invalid": "A gateway id is a positive whole number.",
        "unknown": "Unknown gateway id {value}: GET /api/v1/gateways lists the gateways you may use.",
        "disabled": "Gateway {value} is disabled: choose another from GET /api/v1/gateways.",
    }

    def to_internal_value(self, data: Any) -> Gateway:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        gateway_id = data
        if not 1 <= gateway_id <= MAX_GATEWAY_ID:
            self.fail("unknown", value=gateway_id)
        gateway = Gateway.objects.filter(pk=gateway_id).first()
        if gateway is None:
            self.fail("unknown", value=gateway_id)
        if not gateway.enabled:
            self.fail("disabled", value=gateway_id)
        return gateway

    def to_representation(self, value: Gateway) -> int:
        return int(value.pk)


# --- instances --------------------------------------------------------------


class CircuitBreakerSummarySerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=BreakerState.choices)
    failures_in_window = serializers.IntegerField()
    threshold = serializers.IntegerField()
    opened_at = serializers.DateTimeField(allow_null=True)
    cooldown_until = serializers.DateTimeField(allow_null=True)
    trip_count = serializers.IntegerField()


class CircuitBreakerSerializer(CircuitBreakerSummarySerializer):
    """``GET .../circuit-breaker``: ``instances.commands.BreakerStatus.as_dict``."""

    instance = serializers.UUIDField()
    window_s = serializers.FloatField()
    cooldown_s = serializers.FloatField()
    next_retry_at = serializers.DateTimeField(allow_null=True)
    retry_count = serializers.IntegerField()


class InstanceSerializer(StrictSerializerMixin, serializers.ModelSerializer[Instance]):
    """An instance as tenants see it; ``id`` is its public UUID."""

    id = serializers.UUIDField(source="key", read_only=True)
    name = StrictCharField(
        max_length=100,
        validators=[validate_display_name],
        help_text="Unique within the tenant; 1-100 printable characters.",
    )
    gateway = GatewayField(help_text="A gateway id from GET /api/v1/gateways.")
    last_reason = ReasonField()
    circuit_breaker = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "gateway",
            "status",
            "desired_state",
            "last_reason",
            "last_message",
            "retry_count",
            "next_retry_at",
            "status_changed_at",
            "connected_at",
            "disconnected_at",
            "paired",
            "account",
            "circuit_breaker",
            "created_at",
        ]
        read_only_fields = [
            "status",
            "desired_state",
            "last_reason",
            "last_message",
            "retry_count",
            "next_retry_at",
            "status_changed_at",
            "connected_at",
            "disconnected_at",
            "paired",
            "account",
            "created_at",
        ]
        # Name uniqueness is checked in validate_name, with the tenant.
        validators: list[Any] = []

    @extend_schema_field(CircuitBreakerSummarySerializer)
    def get_circuit_breaker(self, instance: Instance) -> dict[str, Any]:
        return commands.breaker_status(instance).summary()

    def validate_name(self, value: str) -> str:
        tenant = self.context["tenant"]
        clash = Instance.objects.filter(tenant=tenant, name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("You already have an instance with this name.")
        return value


class InstanceUpdateSerializer(InstanceSerializer):
    """PATCH: only the name changes; the gateway is fixed at creation."""

    gateway = GatewayField(read_only=True)

    class Meta(InstanceSerializer.Meta):
        read_only_fields = [*InstanceSerializer.Meta.read_only_fields, "gateway"]


class InstanceListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Status.choices, required=False)


# --- QR, events, health -----------------------------------------------------


class QRCodeSerializer(serializers.Serializer[Any]):
    instance = serializers.UUIDField()
    code = serializers.CharField(help_text="The pairing code to scan.")
    expires_at = serializers.DateTimeField(allow_null=True)
    image = serializers.CharField(help_text="The code as a PNG image, a data: URI (base64).")


class PairCodeRequestSerializer(StrictSerializerMixin, serializers.Serializer[Any]):
    phone = StrictCharField(
        max_length=16,
        validators=[validate_pairing_phone],
        help_text=(
            "The account's phone number in E.164 (+6281234567890), a valid number of its country: the code is "
            "entered on that phone."
        ),
    )


class PairCodeSerializer(serializers.Serializer[Any]):
    """Where the instance's request for a pairing code stands."""

    instance = serializers.UUIDField(source="key")
    phone = serializers.CharField(source="pair_phone", help_text="The number the code was asked for; empty if none.")
    state = serializers.ChoiceField(
        source="pair_state",
        choices=PairState.choices,
        help_text="requested and sent: waiting; issued: enter `code` on the phone; failed: see `error`.",
    )
    code = serializers.CharField(
        source="pair_code", help_text="The code to enter on the phone (Linked devices); empty until issued."
    )
    error = serializers.CharField(source="pair_error", help_text="Why the gateway gave no code; empty otherwise.")


class ConnectionEventSerializer(serializers.ModelSerializer[ConnectionEvent]):
    kind = serializers.ChoiceField(choices=EventKind.choices)
    reason = ReasonField()

    class Meta:
        model = ConnectionEvent
        fields = ["id", "at", "kind", "reason", "message", "actor", "data"]


class HealthSerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField()
    score = serializers.IntegerField(min_value=0, max_value=100)
    instances = serializers.IntegerField()
    expected = serializers.IntegerField(help_text="Instances expected to be connected (see the score).")
    connected = serializers.IntegerField(help_text="Expected instances that are connected.")
    open_breakers = serializers.IntegerField(help_text="Instances whose circuit breaker is open.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Instances by status.")
    breakers = serializers.DictField(child=serializers.IntegerField(), help_text="Instances by breaker state.")


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()
