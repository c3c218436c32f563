"""Operator pages: alert webhooks (with write-only secrets), alerts, their
deliveries and health snapshots.

Staff tied to a tenant (``instances.models.tenant_of``) see and manage only
that tenant's webhooks, alerts and deliveries, and create webhooks for that
tenant only; platform-wide webhooks are for superusers and untied staff.
A webhook's secret is never shown again after it is set: leave the field
empty to keep it, or to have one generated (shown once, on that save).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from instances.models import Tenant, tenant_of
from monitoring.models import Alert, AlertDelivery, AlertWebhook, HealthSnapshot


class AlertWebhookForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs each body (HMAC-SHA256). Empty: keep the current one, or generate one for a new webhook.",
    )

    class Meta:
        model = AlertWebhook
        fields = ["name", "url", "tenant", "enabled"]


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TenantScoped(admin.ModelAdmin):
    """Filters the changelist to the user's tenant (``tenant_path`` leads from
    the model to its tenant id)."""

    tenant_path = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        tenant = tenant_of(request.user)
        if tenant is None or request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.tenant_path: tenant})


@admin.register(AlertWebhook)
class AlertWebhookAdmin(TenantScoped):
    form = AlertWebhookForm
    list_display = ["name", "tenant", "enabled", "created_at"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["name"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant = tenant_of(request.user)
        if tenant is not None and not request.user.is_superuser and "tenant" in form.base_fields:
            field = form.base_fields["tenant"]
            field.queryset = Tenant.objects.filter(pk=tenant.pk)
            field.required = True
            field.empty_label = None
            field.initial = tenant.pk
        return form

    def save_model(self, request: HttpRequest, obj: AlertWebhook, form: Any, change: bool) -> None:
        tenant = tenant_of(request.user)
        if tenant is not None and not request.user.is_superuser:
            obj.tenant = tenant
        secret = form.cleaned_data.get("secret") or ""
        generated = ""
        if secret:
            obj.set_secret(secret)
        elif not obj.secret_encrypted:
            generated = obj.set_secret()
        super().save_model(request, obj, form, change)
        if generated:
            messages.warning(
                request,
                f"Signing secret of {obj.name}: {generated} — copy it now, it will not be shown again.",
            )


@admin.register(Alert)
class AlertAdmin(TenantScoped, ReadOnly):
    list_display = ["created_at", "kind", "status", "severity", "tenant", "instance", "summary"]
    list_filter = ["status", "kind", "severity"]
    search_fields = ["summary", "instance__name"]
    list_select_related = ["tenant", "instance"]
    date_hierarchy = "created_at"


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(TenantScoped, ReadOnly):
    tenant_path = "webhook__tenant"
    list_display = [
        "created_at",
        "alert",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status"]
    list_select_related = ["alert", "webhook"]
    readonly_fields = ["response_excerpt"]


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(TenantScoped, ReadOnly):
    list_display = ["at", "tenant", "score", "status", "connected", "expected", "open_breakers", "live_workers"]
    list_filter = ["status"]
    date_hierarchy = "at"
