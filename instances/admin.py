"""Operator pages for tenants, gateways, instances and their history.

Instance tokens are never shown: the encrypted column is not editable and
no page lists it.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from instances.models import (
    CircuitBreaker,
    ConnectionEvent,
    Gateway,
    Instance,
    Status,
    Tenant,
    WorkerHeartbeat,
)

STATUS_COLOURS = {
    Status.CONNECTED: "#1a7f37",
    Status.CONNECTING: "#9a6700",
    Status.AWAITING_QR: "#0969da",
    Status.BACKING_OFF: "#bc4c00",
    Status.DISCONNECTED: "#bc4c00",
    Status.CIRCUIT_OPEN: "#cf222e",
    Status.LOGGED_OUT: "#8250df",
    Status.REPLACED: "#8250df",
    Status.FORBIDDEN: "#cf222e",
    Status.HALTED: "#cf222e",
}
BREAKER_COLOURS = {"closed": "#1a7f37", "half_open": "#9a6700", "open": "#cf222e"}


def _badge(text: str, colour: str) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>', colour, text
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records written by the platform itself, never by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "url"]


class BreakerInline(admin.StackedInline):
    model = CircuitBreaker
    can_delete = False
    readonly_fields = ["state", "failures", "opened_at", "cooldown_until", "trip_count", "updated_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RecentEventsInline(admin.TabularInline):
    model = ConnectionEvent
    extra = 0
    can_delete = False
    ordering = ["-at", "-id"]
    fields = ["at", "kind", "reason", "message", "actor", "epoch"]
    readonly_fields = fields
    max_num = 0
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConnectionEvent]:
        return super().get_queryset(request).order_by("-at", "-id")


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "tenant",
        "gateway",
        "status_badge",
        "desired_state",
        "breaker_badge",
        "last_reason",
        "retry_count",
        "next_retry_at",
        "since_change",
    ]
    list_filter = ["status", "desired_state", "breaker__state", "tenant", "gateway"]
    search_fields = ["name", "key", "account"]
    list_select_related = ["tenant", "gateway", "breaker"]
    readonly_fields = [
        "key",
        "status",
        "status_changed_at",
        "last_reason",
        "last_message",
        "connected_at",
        "disconnected_at",
        "retry_count",
        "next_retry_at",
        "lease_epoch",
        "owner",
        "paired",
        "account",
        "qr_code",
        "qr_expires_at",
        "session_id",
        "created_at",
    ]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "key", "gateway", "desired_state"]}),
        (
            "Session",
            {
                "fields": [
                    "status",
                    "status_changed_at",
                    "last_reason",
                    "last_message",
                    "connected_at",
                    "disconnected_at",
                    "retry_count",
                    "next_retry_at",
                    "owner",
                    "lease_epoch",
                    "session_id",
                ]
            },
        ),
        ("Pairing", {"fields": ["paired", "account", "qr_code", "qr_expires_at"]}),
        (None, {"fields": ["created_at"]}),
    ]
    inlines = [BreakerInline, RecentEventsInline]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Instance) -> str:
        return _badge(obj.get_status_display(), STATUS_COLOURS.get(Status(obj.status), "#57606a"))

    @admin.display(description="breaker", ordering="breaker__state")
    def breaker_badge(self, obj: Instance) -> str:
        state = getattr(getattr(obj, "breaker", None), "state", "closed")
        return _badge(state.replace("_", "-"), BREAKER_COLOURS.get(state, "#57606a"))

    @admin.display(description="since change", ordering="status_changed_at")
    def since_change(self, obj: Instance) -> str:
        return timesince(obj.status_changed_at, timezone.now())


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(ReadOnlyAdmin):
    list_display = ["instance", "state", "trip_count", "opened_at", "cooldown_until", "updated_at"]
    list_filter = ["state"]
    list_select_related = ["instance"]


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "instance", "kind", "reason", "actor", "message"]
    list_filter = ["kind", "reason"]
    search_fields = ["instance__name", "instance__key", "actor"]
    list_select_related = ["instance"]
    date_hierarchy = "at"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = [
        "worker_id",
        "host",
        "pid",
        "sessions_held",
        "last_seen",
        "last_progress_at",
        "stopped_at",
    ]
