"""Operator pages for tenants, gateways, instances and their history.

Tenancy: a staff user tied to a tenant (``TenantMembership``) sees and
changes only that tenant's objects: list pages, change pages, foreign-key
dropdowns, list filters and actions all go through
:class:`TenantScopedAdmin`. Superusers and staff tied to no tenant (the
platform's operators) see everything their permissions allow.

Every change to what an instance should do goes through
``instances.commands`` (audited with actor ``user:<username>``), never a
form save; force retry and reset breaker share the per-instance rate limit
of the API (``api.controls``). Instance tokens are never shown: the
encrypted column is not editable and no page lists it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField, ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

from api import controls
from api import qr as qr_images
from api.ratelimit import LimiterUnavailable, RateLimited
from instances import commands
from instances.commands import CommandRefused
from instances.models import (
    CircuitBreaker,
    ConnectionEvent,
    Gateway,
    Instance,
    Status,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
    tenant_of,
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
RECENT_EVENTS = 20


def _badge(text: str, colour: str) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>', colour, text
    )


def scoped_tenant(request: HttpRequest) -> Tenant | None:
    """The tenant a request is confined to; None for superusers and untied operators."""
    user = request.user
    if getattr(user, "is_superuser", False):
        return None
    return tenant_of(user)


def actor_of(request: HttpRequest) -> str:
    """How the audit log names the admin user acting."""
    return f"user:{request.user.get_username()}"


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For records written by the platform itself, never by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TenantScopedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Confines a tenant's staff to the tenant's objects.

    ``tenant_lookup`` is the ORM path from the model to its ``Tenant``. The
    queryset (lists, change pages, history, deletes and the rows an action
    receives), the choices of every foreign key to a tenant, an instance or
    a gateway, and the list filters are scoped; a new object is saved in the
    user's tenant whatever the form said.
    """

    tenant_lookup = "tenant"
    tenant_list_filters: Sequence[str] = ("tenant",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        tenant = scoped_tenant(request)
        return queryset if tenant is None else queryset.filter(**{self.tenant_lookup: tenant.pk})

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        tenant = scoped_tenant(request)
        related = db_field.related_model
        if tenant is not None:
            if related is Tenant:
                kwargs["queryset"] = Tenant.objects.filter(pk=tenant.pk)
                kwargs["initial"] = tenant.pk
            elif related is Instance:
                kwargs["queryset"] = Instance.objects.filter(tenant=tenant)
        if related is Gateway:
            kwargs["queryset"] = Gateway.objects.filter(enabled=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Sequence[Any]:
        filters = super().get_list_filter(request)
        if scoped_tenant(request) is None:
            return filters
        # The tenant filter would list every tenant's name.
        return [f for f in filters if f not in self.tenant_list_filters]

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        tenant = scoped_tenant(request)
        if tenant is not None and self.tenant_lookup == "tenant":
            obj.tenant = tenant
        super().save_model(request, obj, form, change)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_lookup = "pk"
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return scoped_tenant(request) is None and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return scoped_tenant(request) is None and super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return ["slug"] if scoped_tenant(request) is not None else []


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Ties staff users to tenants: for the platform's operators only."""

    list_display = ["user", "tenant"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "tenant__slug"]

    def _operator(self, request: HttpRequest) -> bool:
        return scoped_tenant(request) is None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._operator(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._operator(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._operator(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._operator(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._operator(request) and super().has_delete_permission(request, obj)


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Platform administrators keep the list; a tenant's staff may only look at it."""

    list_display = ["name", "url", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "url"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return scoped_tenant(request) is None and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return scoped_tenant(request) is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return scoped_tenant(request) is None and super().has_delete_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Gateway]:
        queryset = super().get_queryset(request)
        return queryset if scoped_tenant(request) is None else queryset.filter(enabled=True)


@admin.register(Instance)
class InstanceAdmin(TenantScopedAdmin):
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
    actions = ["connect", "disconnect", "force_retry", "reset_breaker"]
    # Everything a worker writes, shown and never written by the form.
    session_fields = [
        "key",
        "desired_state",
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
    extra_fields = ["qr_image", "breaker_window", "recent_events"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        fields = [*self.session_fields, *self.extra_fields]
        if obj is not None:
            # Moving an instance to another tenant or gateway is not a form edit.
            fields += ["tenant", "gateway"]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["tenant", "name", "gateway"]})]
        return [
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
            ("Pairing", {"fields": ["paired", "account", "qr_code", "qr_expires_at", "qr_image"]}),
            ("Circuit breaker", {"fields": ["breaker_window"]}),
            ("Recent events", {"fields": ["recent_events"]}),
            (None, {"fields": ["created_at"]}),
        ]

    def save_model(self, request: HttpRequest, obj: Instance, form: ModelForm[Any], change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Write only what the form may change: a full save would overwrite
        # the status a worker wrote since the page was loaded.
        changed = [name for name in form.changed_data if name in {"name"}]
        if changed:
            obj.save(update_fields=changed)

    def delete_model(self, request: HttpRequest, obj: Instance) -> None:
        commands.disconnect(obj, actor=actor_of(request))
        super().delete_model(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, set[str], Any]:
        # An instance's breaker, events and other records die with it
        # (on_delete=CASCADE) and are read-only here: deleting the instance
        # needs the permission to delete instances, not one per record type.
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        for instance in queryset:
            commands.disconnect(instance, actor=actor_of(request))
        super().delete_queryset(request, queryset)

    # --- list columns -----------------------------------------------------------

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

    # --- change page ------------------------------------------------------------

    @admin.display(description="QR code")
    def qr_image(self, obj: Instance) -> SafeString | str:
        if obj.pk is None or obj.status != Status.AWAITING_QR or not obj.qr_code:
            return "-"
        # segno writes only path data: nothing of the code is echoed as markup.
        return mark_safe(qr_images.svg_inline(obj.qr_code))

    @admin.display(description="breaker window")
    def breaker_window(self, obj: Instance) -> str:
        if obj.pk is None:
            return "-"
        status = commands.breaker_status(obj)
        row = CircuitBreaker.objects.filter(instance=obj).first()
        now = timezone.now().timestamp()
        failures = sorted((t for t in (row.failures if row else []) if now - t <= status.window_s), reverse=True)
        times = format_html_join(
            "",
            "<li>failure {} ago</li>",
            ((timesince(dt.datetime.fromtimestamp(t, tz=dt.UTC)),) for t in failures),
        )
        return format_html(
            "{} &nbsp; {} of {} failures in the last {} s; cooldown {} s; tripped {} times{}{}"
            "<ul style='margin:4px 0 0 16px'>{}</ul>",
            _badge(status.state.replace("_", "-"), BREAKER_COLOURS.get(status.state, "#57606a")),
            status.failures_in_window,
            status.threshold,
            f"{status.window_s:g}",
            f"{status.cooldown_s:g}",
            status.trip_count,
            format_html("; opened {}", status.opened_at) if status.opened_at else "",
            format_html("; cooldown until {}", status.cooldown_until) if status.cooldown_until else "",
            times,
        )

    @admin.display(description="recent events")
    def recent_events(self, obj: Instance) -> str:
        if obj.pk is None:
            return "-"
        events = ConnectionEvent.objects.filter(instance=obj).order_by("-at", "-id")[:RECENT_EVENTS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e.at.strftime("%Y-%m-%d %H:%M:%S"), e.get_kind_display(), e.reason, e.message, e.actor) for e in events),
        )
        all_url = reverse("admin:instances_connectionevent_changelist") + f"?instance__id__exact={obj.pk}"
        return format_html(
            "<table><thead><tr><th>at</th><th>event</th><th>reason</th><th>message</th><th>actor</th></tr>"
            "</thead><tbody>{}</tbody></table><p><a href='{}'>All events of this instance</a></p>",
            rows,
            all_url,
        )

    # --- actions ----------------------------------------------------------------

    def _act(
        self,
        request: HttpRequest,
        queryset: QuerySet[Instance],
        command: Callable[[Instance, str], Instance],
        done: str,
    ) -> None:
        actor = actor_of(request)
        affected = 0
        skipped: list[str] = []
        for instance in queryset:
            try:
                command(instance, actor)
            except CommandRefused as exc:
                skipped.append(f"{instance.name}: {exc}")
            except RateLimited as exc:
                skipped.append(f"{instance.name}: done moments ago, try again in {exc.retry_after_header} s")
            except LimiterUnavailable:
                skipped.append(f"{instance.name}: the rate limiter is unavailable")
            else:
                affected += 1
        noun = "instance" if affected == 1 else "instances"
        messages.success(request, f"{done} for {affected} {noun}.")
        if skipped:
            messages.warning(request, f"Skipped {len(skipped)}: " + "; ".join(skipped))

    @admin.action(description="Connect selected instances", permissions=["change"])
    def connect(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, commands.connect, "Connect requested")

    @admin.action(description="Disconnect selected instances", permissions=["change"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, commands.disconnect, "Disconnect requested")

    @admin.action(description="Force a retry of selected instances", permissions=["change"])
    def force_retry(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.force_retry, "Retry forced")

    @admin.action(description="Reset the circuit breaker of selected instances", permissions=["change"])
    def reset_breaker(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.reset_breaker, "Breaker reset")


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    tenant_lookup = "instance__tenant"
    list_display = ["instance", "state", "trip_count", "opened_at", "cooldown_until", "updated_at"]
    list_filter = ["state"]
    list_select_related = ["instance"]


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    tenant_lookup = "instance__tenant"
    list_display = ["at", "instance", "kind", "reason", "actor", "message"]
    list_filter = ["kind", "reason"]
    search_fields = ["instance__name", "instance__key", "actor"]
    list_select_related = ["instance"]
    date_hierarchy = "at"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    """Platform internals: not shown to a tenant's staff."""

    list_display = [
        "worker_id",
        "host",
        "pid",
        "sessions_held",
        "last_seen",
        "last_progress_at",
        "stopped_at",
    ]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return scoped_tenant(request) is None and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return scoped_tenant(request) is None and super().has_view_permission(request, obj)
