"""API keys in the admin: created here or with ``manage.py create_api_key``.

A new key is shown once, on the page that answers the add form, and never
stored in clear (not in a message, the session or the admin log). A tenant's
staff see and create only their tenant's keys.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from api.models import KEY_PREFIX, ApiKey, hash_key
from instances.admin import TenantScopedAdmin, actor_of, shown_once

NEW_KEY_ATTRIBUTE = "_blast_new_api_key"


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    """Refuses a name the tenant's active keys already use.

    The model's constraint is conditional on ``revoked_at``, a field the form
    does not hold, so Django's form validation would skip it.
    """

    class Meta:
        model = ApiKey
        fields = ["tenant", "name"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        tenant = cleaned.get("tenant") or getattr(self.instance, "tenant", None)
        name = cleaned.get("name")
        if tenant is not None and name:
            clash = ApiKey.objects.active().filter(tenant=tenant, name=name)
            if self.instance.pk is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                self.add_error("name", "This tenant already has an active API key with this name.")
        return cleaned


class KeyStatusFilter(admin.SimpleListFilter):
    """Active or revoked keys: the revocation time's "empty / not empty"
    said the same thing backwards."""

    title = "key status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    form = ApiKeyForm
    list_display = ["name", "shown_prefix", "tenant", "created_at", "last_used_at", "revoked"]
    list_filter = ["tenant", KeyStatusFilter]
    list_select_related = ["tenant"]
    search_fields = ["name", "prefix", "tenant__slug"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["tenant", "name"]
        return ["tenant", "name", "shown_prefix", "created_at", "created_by", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["tenant", "shown_prefix", "created_at", "created_by", "last_used_at", "revoked_at"]

    @admin.display(description="key", ordering="prefix")
    def shown_prefix(self, obj: ApiKey) -> str:
        return obj.display_prefix if obj.prefix else "-"

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def revoked(self, obj: ApiKey) -> bool:
        return obj.revoked

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm[Any], change: bool) -> None:
        if change:
            if "name" in form.changed_data:
                obj.save(update_fields=["name"])
            return
        tenant = self.tenant_for(request, obj.tenant)
        key, raw = ApiKey.objects.create_key(tenant, obj.name, created_by=actor_of(request))
        # The form's object becomes the created row (for the admin log and redirects).
        obj.pk, obj.tenant, obj.prefix, obj.key_hash = key.pk, tenant, key.prefix, key.key_hash
        obj.created_at, obj.created_by = key.created_at, key.created_by
        obj._state.adding = False
        setattr(request, NEW_KEY_ATTRIBUTE, raw)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = getattr(request, NEW_KEY_ATTRIBUTE, None)
        if raw is None or hash_key(raw) != obj.key_hash:  # pragma: no cover - defensive
            return super().response_add(request, obj, post_url_continue)
        return shown_once(
            self,
            request,
            "admin/api/apikey/created.html",
            f"API key {obj.name!r} created",
            key=obj,
            raw_key=raw,
            key_prefix=KEY_PREFIX,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(1 for key in queryset if key.revoke())
        noun = "key" if revoked == 1 else "keys"
        messages.success(request, f"Revoked {revoked} API {noun}.")
