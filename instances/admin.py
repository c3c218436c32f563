"""Operator pages for tenants, gateways, instances and their history.

Tenancy (``instances.models.access_of`` decides who a request is):

- Operators (superusers, and staff in the ``Platform operators`` group) see
  everything their permissions allow.
- Staff tied to a tenant (``TenantMembership``) see and change only that
  tenant's objects: list pages, change pages, foreign-key dropdowns, list
  filters and actions all go through :class:`TenantScopedAdmin`. They see
  gateways by name only, never their URLs, and the platform's internals
  (memberships, worker heartbeats, users, groups, schedules) not at all.
- Any other staff user sees nothing: no app on the index, 403 on every page.

Every change to what an instance should do goes through
``instances.commands`` (audited with actor ``user:<username>``), never a
form save; force retry, reset breaker and a pairing-code request share the
per-instance rate limit of the API (``instances.controls``). Instance tokens are never shown: the
encrypted column is not editable and no page lists it.

An instance's change page keeps its pairing QR code current: the gateway
draws a new one every 20 s or so, and the owner scanning it must not have to
reload. The page's script (``instances/admin/qr.js``) asks
``<id>/qr-state/`` (:func:`qr_state`, under the same tenant scoping as the
page) every couple of seconds for as long as a new code may come.

About 1,000 lines on purpose: the tenancy rules above are one policy, applied
by one base class to every model admin of the app; kept together, a change
to who may see what is read and reviewed in one place.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.filters import (
    AllValuesFieldListFilter,
    BooleanFieldListFilter,
    ChoicesFieldListFilter,
    DateFieldListFilter,
    FieldListFilter,
    RelatedFieldListFilter,
)
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, DateField, ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_safe
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from instances import commands, controls, sending
from instances import qr as qr_images
from instances.commands import CommandRefused
from instances.models import (
    POLICY_FIELDS,
    Access,
    CircuitBreaker,
    ConnectionEvent,
    Gateway,
    GatewayState,
    Instance,
    PairState,
    SendingDefaults,
    Status,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
    access_of,
    validate_pairing_phone,
)
from instances.ratelimit import LimiterUnavailable, RateLimited
from instances.schedules import JOBS_BY_NAME, interval_note

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
# While an instance is in one of these a new QR code may yet come: the
# change page keeps asking for it.
QR_LIVE_STATUSES = frozenset({Status.CONNECTING, Status.AWAITING_QR})


def _badge(text: str, colour: str, title: str = "") -> str:
    return format_html(
        '<span class="blast-badge" style="color:#fff;background:{};padding:1px 6px;border-radius:8px;'
        'white-space:nowrap"{}>{}</span>',
        colour,
        format_html(' title="{}"', title) if title else "",
        text,
    )


def _clipped(text: str, css_class: str) -> str:
    """``text`` in a box its class keeps short (an ellipsis where it is cut),
    the whole of it in the tooltip."""
    return format_html('<span class="blast-clip {}" title="{}">{}</span>', css_class, text, text)


def _when(moment: dt.datetime) -> str:
    """A moment as the admin writes dates, in the site's time zone."""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def qr_state(instance: Instance) -> dict[str, Any]:
    """What the change page shows of an instance's pairing QR code, as its
    script reads it: ``svg``, the code drawn while the instance awaits its
    scan (None otherwise); ``note``, the line under it (the code's expiry,
    "Paired.", or why there is no code); ``live``, whether a new code may
    still come, so that the page asks again."""
    status = Status(instance.status)
    drawn = status == Status.AWAITING_QR and bool(instance.qr_code)
    if drawn:
        expires = instance.qr_expires_at
        note = f"Expires {_when(expires)}." if expires is not None else ""
    elif status == Status.CONNECTED:
        note = "Paired."
    elif status in QR_LIVE_STATUSES:
        note = f"{status.label}: the code shows here once the gateway sends it."
    else:
        note = f"No code to scan: {status.label.lower()}."
    return {
        "status": status.value,
        "svg": qr_images.svg_inline(instance.qr_code) if drawn else None,
        "expires_at": instance.qr_expires_at.isoformat() if drawn and instance.qr_expires_at else None,
        "note": note,
        "live": status in QR_LIVE_STATUSES,
    }


def actor_of(request: HttpRequest) -> str:
    """How the audit log names the admin user acting."""
    return f"user:{request.user.get_username()}"


def shown_once(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    template: str,
    title: str,
    **context: Any,
) -> TemplateResponse:
    """The page that shows a secret this request generated (an API key, a
    webhook's signing secret): the only time it is shown, so no cache may
    keep it. ``context`` names the object and the secret for ``template``;
    the page links back to the model's list."""
    opts = model_admin.model._meta
    page = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        **context,
    }
    response = TemplateResponse(request, template, page)
    response["Cache-Control"] = "no-store"
    return response


def within(queryset: QuerySet[Any], access: Access, lookup: str = "tenant") -> QuerySet[Any]:
    """``queryset`` cut down to what ``access`` may see: all of it for an
    operator, the rows whose ``lookup`` (the ORM path to their ``Tenant``)
    is the user's tenant for tenant staff, nothing for anyone else."""
    if access.operator:
        return queryset
    if access.tenant is None:
        return queryset.none()
    return queryset.filter(**{lookup: access.tenant.pk})


def _tenant_lookup_of(site: admin.AdminSite, model: type[Model]) -> str | None:
    """The ORM path from ``model`` to its tenant, when its admin is tenant-scoped."""
    if not site.is_registered(model):
        return None
    model_admin = site.get_model_admin(model)
    return model_admin.tenant_lookup if isinstance(model_admin, TenantScopedAdmin) else None


class ScopedRelatedListFilter(RelatedFieldListFilter):
    """A list filter on a relation that offers only what the user may see.

    Operators get every related object. Tenant staff get the objects their
    own rows point at, cut down again by the related model's own tenant
    scope when it has one, and only enabled gateways.
    """

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        access = access_of(request.user)
        related: type[Model] = field.related_model
        choices = related._default_manager.all()
        if not access.operator:
            used = model_admin.get_queryset(request).distinct().values_list(f"{self.field_path}__pk", flat=True)
            choices = choices.filter(pk__in=used)
            lookup = _tenant_lookup_of(model_admin.admin_site, related)
            if lookup is not None:
                choices = within(choices, access, lookup)
            if related is Gateway:
                choices = choices.filter(enabled=True)
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            choices = choices.order_by(*ordering)
        value_of = attrgetter(field.target_field.attname)
        return [(value_of(obj), str(obj)) for obj in choices]


class ScopedAllValuesListFilter(AllValuesFieldListFilter):
    """Offers the values found in the rows the user may see.

    Django's own takes them from the whole related table when the field is
    reached through a relation (``instance__last_reason``): other tenants'
    values.
    """

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = (
            model_admin.get_queryset(request).distinct().order_by(field_path).values_list(field_path, flat=True)
        )


class TitledListFilter(FieldListFilter):
    """A field's list filter under a title of its own ("By breaker state")
    rather than the field's verbose name: a field reached through a relation
    (``breaker__state``) would be titled by its own name alone ("By state"),
    which does not say what is filtered. Made by :func:`titled`."""

    filter_title = ""

    def __init__(
        self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = self.filter_title


def titled(filter_class: type[FieldListFilter], title: str) -> type[FieldListFilter]:
    """``filter_class`` titled "By ``title``": for a ``list_filter`` entry
    ``(path, titled(ChoicesFieldListFilter, "breaker state"))``."""
    return type(f"Titled{filter_class.__name__}", (TitledListFilter, filter_class), {"filter_title": title})


def _default_list_filter(field: Any) -> type[FieldListFilter]:
    """The filter Django picks for a plain field name (the order in which
    django.contrib.admin.filters registers them)."""
    if field.remote_field:
        return RelatedFieldListFilter
    if isinstance(field, BooleanField):
        return BooleanFieldListFilter
    if field.choices:
        return ChoicesFieldListFilter
    if isinstance(field, DateField):
        return DateFieldListFilter
    return AllValuesFieldListFilter


def scoped_list_filter(model: type[Model], item: Any, access: Access) -> Any | None:
    """The ``list_filter`` entry ``item`` as ``access`` may see it, or None to
    leave it out.

    Filters on relations and "all values" filters take their choices from
    the database, so they are replaced by the scoped ones above; a filter on
    the tenant itself is dropped for tenant staff (it would name every
    tenant). Fixed choices, booleans, dates and "empty or not" name nothing
    and stay. A ``SimpleListFilter`` offers what its own code looks up and
    must scope that itself.
    """
    if isinstance(item, str):
        path, filter_class = item, None
    elif isinstance(item, list | tuple):
        path, filter_class = item
    else:
        return item
    field = get_fields_from_path(model, path)[-1]
    filter_class = filter_class or _default_list_filter(field)
    scoped: type[FieldListFilter] | None = None
    if issubclass(filter_class, RelatedFieldListFilter):
        if field.related_model is Tenant and not access.operator:
            return None
        scoped = ScopedRelatedListFilter
    elif issubclass(filter_class, AllValuesFieldListFilter):
        scoped = ScopedAllValuesListFilter
    if scoped is None:
        return item
    if issubclass(filter_class, TitledListFilter):
        # The scoped filter keeps the title given.
        scoped = titled(scoped, filter_class.filter_title)
    return (path, scoped)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For records written by the platform itself, never by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AccessGatedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shows nothing, whatever their permissions say, to staff who are
    neither operators nor tied to a tenant: no module on the index, 403 on
    every page. With ``operators_only`` a tenant's staff see nothing either.

    Every admin on the site is one of these (``confine_unscoped_admins``
    puts the ones other apps register behind :class:`OperatorOnlyAdmin`).
    """

    operators_only = False

    def admits(self, request: HttpRequest) -> bool:
        access = access_of(request.user)
        return access.operator or (access.tenant is not None and not self.operators_only)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admits(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admits(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.admits(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admits(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admits(request) and super().has_delete_permission(request, obj)


class OperatorOnlyAdmin(AccessGatedAdmin):
    """For the platform's internals: operators only."""

    operators_only = True


def confine_unscoped_admins(site: admin.AdminSite = admin.site) -> None:
    """Put every registered admin that knows nothing of tenants (Django's
    users and groups, django-celery-beat's schedules) behind
    :class:`OperatorOnlyAdmin`, keeping everything else it does.

    Called once every app's admin module is loaded (``InstancesConfig.ready``).
    """
    for model in apps.get_models():
        if not site.is_registered(model):
            continue
        model_admin = site.get_model_admin(model)
        if isinstance(model_admin, AccessGatedAdmin):
            continue
        original = type(model_admin)
        confined = type(f"Operator{original.__name__}", (OperatorOnlyAdmin, original), {"__module__": __name__})
        site.unregister(model)
        site.register(model, confined)


class TenantScopedAdmin(AccessGatedAdmin):
    """Confines a tenant's staff to the tenant's objects.

    ``tenant_lookup`` is the ORM path from the model to its ``Tenant``. The
    queryset (lists, change pages, history, deletes and the rows an action
    receives), the choices of every foreign key and many-to-many field to a
    tenant-scoped model (tenants, instances, contact lists, campaigns...),
    the gateways offered (enabled ones) and the list filters are scoped; a
    new object is saved in the user's tenant whatever the form said.
    """

    tenant_lookup = "tenant"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return within(super().get_queryset(request), access_of(request.user), self.tenant_lookup)

    def tenant_for(self, request: HttpRequest, chosen: Tenant | None) -> Tenant | None:
        """The tenant a new object lands in: the one chosen on the form for an
        operator, the user's own for tenant staff."""
        access = access_of(request.user)
        if access.operator:
            return chosen
        if access.tenant is None:
            raise PermissionDenied
        return access.tenant

    def _scoped_choices(self, related: type[Model], request: HttpRequest) -> QuerySet[Any] | None:
        lookup = _tenant_lookup_of(self.admin_site, related)
        if lookup is None:
            return None
        return within(related._default_manager.all(), access_of(request.user), lookup)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        access = access_of(request.user)
        related = db_field.related_model
        if not access.operator:
            scoped = self._scoped_choices(related, request)
            if scoped is not None:
                kwargs["queryset"] = scoped
            if related is Tenant and access.tenant is not None:
                kwargs["initial"] = access.tenant.pk
        if related is Gateway:
            kwargs["queryset"] = Gateway.objects.filter(enabled=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not access_of(request.user).operator:
            scoped = self._scoped_choices(db_field.related_model, request)
            if scoped is not None:
                kwargs["queryset"] = scoped
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Sequence[Any]:
        access = access_of(request.user)
        scoped = (scoped_list_filter(self.model, item, access) for item in super().get_list_filter(request))
        return [item for item in scoped if item is not None]

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        if self.tenant_lookup == "tenant" and not access_of(request.user).operator:
            obj.tenant = self.tenant_for(request, None)
        super().save_model(request, obj, form, change)


DAY_CHOICES = [(day, day.capitalize()) for day in sending.DAY_NAMES]


def days_field(db_field: Any, required: bool) -> forms.MultipleChoiceField | None:
    """Sending days as ticks, where the form shows them (None: another field)."""
    if db_field.name != "send_days":
        return None
    return forms.MultipleChoiceField(
        choices=DAY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        required=required,
        label="Send days",
        help_text="Days messages go out on, local to the time zone.",
    )


class SendingDefaultsForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks the defaults as the API does; a blank field is the platform's."""

    class Meta:
        model = SendingDefaults
        fields = list(POLICY_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        cleaned["send_days"] = cleaned.get("send_days") or None  # none ticked: the platform's, every day
        if not self.errors:
            for name, why in sending.check(cleaned).items():
                self.add_error(name, why)
        return cleaned


class SendingDefaultsInline(admin.StackedInline):  # type: ignore[type-arg]
    model = SendingDefaults
    form = SendingDefaultsForm
    can_delete = False
    verbose_name = verbose_name_plural = "sending defaults for new instances (blank: the platform's setting)"

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        return days_field(db_field, required=False) or super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_lookup = "pk"
    inlines = [SendingDefaultsInline]
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access_of(request.user).operator and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting a tenant deactivates its staff (instances.models.deactivate_tenant_staff).
        return access_of(request.user).operator and super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        return [] if access_of(request.user).operator else ["slug"]

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, Any, set[str], Any]:
        # A tenant's instances, breakers, events, messages and other records
        # the platform writes die with it (on_delete=CASCADE) and are
        # read-only here: an operator allowed to delete tenants needs no
        # permission per record type. Protected rows still block it.
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected


@admin.register(TenantMembership)
class TenantMembershipAdmin(OperatorOnlyAdmin):
    """Ties staff users to tenants: for the platform's operators only."""

    list_display = ["user", "tenant"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "tenant__slug"]


@admin.register(Gateway)
class GatewayAdmin(AccessGatedAdmin):
    """Platform administrators keep the list; a tenant's staff may only look
    at the enabled gateways' names (as the API shows them)."""

    list_display = ["name", "url", "enabled", "state_badge", "down_since", "next_probe_at", "outage_count"]
    list_filter = ["enabled", ("state", titled(ChoicesFieldListFilter, "gateway state"))]
    search_fields = ["name", "url"]
    readonly_fields = [
        "state",
        "state_changed_at",
        "down_since",
        "down_reason",
        "last_probe_at",
        "next_probe_at",
        "probe_count",
        "outage_count",
        "recent_events",
    ]
    actions = ["probe_now"]

    @admin.display(description="state", ordering="state")
    def state_badge(self, gateway: Gateway) -> str:
        if gateway.state == GatewayState.DOWN:
            reason = f" ({gateway.down_reason})" if gateway.down_reason else ""
            return format_html('<strong style="color:#ba2121">down</strong>{}', reason)
        return "up"

    @admin.display(description="recent transitions")
    def recent_events(self, gateway: Gateway) -> str:
        events = list(gateway.events.order_by("-at", "-id")[:10])
        if not events:
            return "none"
        return format_html_join(
            mark_safe("<br>"),
            "{} {} {} {}",
            ((f"{e.at:%Y-%m-%d %H:%M:%S}", e.get_kind_display(), e.actor, e.message) for e in events),
        )

    @admin.action(description="Probe the selected down gateways now", permissions=["change"])
    def probe_now(self, request: HttpRequest, queryset: QuerySet[Gateway]) -> None:
        actor = actor_of(request)
        probed: list[str] = []
        skipped: list[str] = []
        for gateway in queryset:
            try:
                controls.probe_gateway(gateway, actor)
            except CommandRefused as exc:
                skipped.append(str(exc))
            except RateLimited as exc:
                skipped.append(f"{gateway.name}: probed moments ago, try again in {exc.retry_after_header} s")
            except LimiterUnavailable:
                skipped.append(f"{gateway.name}: the rate limiter is unavailable")
            else:
                probed.append(gateway.name)
        if probed:
            messages.success(request, f"Probe requested for {', '.join(probed)}: a worker runs it within a second.")
        if skipped:
            messages.warning(request, "Skipped: " + "; ".join(skipped))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access_of(request.user).operator and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return access_of(request.user).operator and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return access_of(request.user).operator and super().has_delete_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Gateway]:
        queryset = super().get_queryset(request)
        return queryset if access_of(request.user).operator else queryset.filter(enabled=True)

    def get_list_display(self, request: HttpRequest) -> Sequence[Any]:
        shown = super().get_list_display(request)
        return shown if access_of(request.user).operator else [f for f in shown if f != "url"]

    def get_list_filter(self, request: HttpRequest) -> Sequence[Any]:
        # Only enabled gateways are listed to tenant staff: nothing to filter.
        return super().get_list_filter(request) if access_of(request.user).operator else []

    def get_search_fields(self, request: HttpRequest) -> Sequence[str]:
        # Searching by URL would let tenant staff probe for one.
        shown = super().get_search_fields(request)
        return shown if access_of(request.user).operator else [f for f in shown if f != "url"]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Sequence[str] | None:
        return super().get_exclude(request, obj) if access_of(request.user).operator else ["url"]


class InstanceForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks the sending policy as the API does (instances.sending)."""

    class Meta:
        model = Instance
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        # A field the form does not show (the add form), or one already
        # refused, is read as the platform's default.
        for name, why in sending.check(cleaned).items():
            if name not in self.errors:
                self.add_error(name, why)
        return cleaned


@admin.register(Instance)
class InstanceAdmin(TenantScopedAdmin):
    # Compact cells, so that every column fits a 1,400 px window beside the
    # navigation and filter sidebars: the tenant under the name, the last
    # reason under the status, the next retry under the count; long names
    # are cut short, whole in their tooltip. The gateway is a filter.
    list_display = [
        "name_cell",
        "status_badge",
        "breaker_badge",
        "desired",
        "retries",
        "since_change",
    ]
    list_filter = [
        "status",
        "desired_state",
        ("breaker__state", titled(ChoicesFieldListFilter, "breaker state")),
        "tenant",
        "gateway",
    ]
    search_fields = ["name", "key", "account"]
    list_select_related = ["tenant", "gateway", "breaker"]
    actions = ["connect", "disconnect", "force_retry", "reset_breaker", "logout"]
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
        "pair_phone",
        "pair_state",
        "pair_code",
        "pair_error",
        "gateway_features",
        "session_id",
        "created_at",
        "warmup_started_at",
        "slowed_until",
        "paused_until",
    ]
    extra_fields = ["qr_image", "pair_code_link", "breaker_window", "recent_events", "policy_in_force"]
    form = InstanceForm

    class Media:
        css = {"all": ["instances/admin/instances.css"]}

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
            (
                "Pairing",
                {
                    "fields": [
                        "paired",
                        "account",
                        # The code drawn, with its expiry: its text is for the phone, not the page.
                        "qr_image",
                        "pair_code_link",
                        "pair_phone",
                        "pair_state",
                        "pair_code",
                        "pair_error",
                        "gateway_features",
                    ]
                },
            ),
            (
                "Sending policy",
                {
                    "fields": [*POLICY_FIELDS, "policy_in_force", "warmup_started_at", "slowed_until", "paused_until"],
                    "description": (
                        "Delays between two sends, caps (0: no cap) and the hours messages may go out at "
                        "(local to the time zone; none: any hour); the next send follows a change."
                    ),
                },
            ),
            ("Circuit breaker", {"fields": ["breaker_window"]}),
            ("Recent events", {"fields": ["recent_events"]}),
            (None, {"fields": ["created_at"]}),
        ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        return days_field(db_field, required=True) or super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Instance, form: ModelForm[Any], change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Write only what the form may change: a full save would overwrite
        # the status a worker wrote since the page was loaded.
        changed = [name for name in form.changed_data if name in {"name", *POLICY_FIELDS}]
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

    def get_list_display(self, request: HttpRequest) -> Sequence[Any]:
        shown = super().get_list_display(request)
        if access_of(request.user).operator:
            return shown
        # Tenant staff see one tenant's instances: naming it on every row says nothing.
        return ["name_only" if column == "name_cell" else column for column in shown]

    @admin.display(description="instance", ordering="name")
    def name_cell(self, obj: Instance) -> str:
        return format_html("{}{}", self.name_only(obj), _clipped(str(obj.tenant), "blast-sub blast-fill"))

    @admin.display(description="instance", ordering="name")
    def name_only(self, obj: Instance) -> str:
        return _clipped(obj.name, "blast-name")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Instance) -> str:
        badge = _badge(obj.get_status_display(), STATUS_COLOURS.get(Status(obj.status), "#57606a"), obj.last_message)
        if not obj.last_reason:
            return badge
        return format_html("{}{}", badge, _clipped(obj.last_reason, "blast-sub blast-fill"))

    @admin.display(description="breaker", ordering="breaker__state")
    def breaker_badge(self, obj: Instance) -> str:
        state = getattr(getattr(obj, "breaker", None), "state", "closed")
        return _badge(state.replace("_", "-"), BREAKER_COLOURS.get(state, "#57606a"))

    @admin.display(description="desired", ordering="desired_state")
    def desired(self, obj: Instance) -> str:
        return obj.get_desired_state_display()

    @admin.display(description="retries", ordering="retry_count")
    def retries(self, obj: Instance) -> str:
        if obj.next_retry_at is None:
            return str(obj.retry_count)
        now = timezone.now()
        due = f"in {timeuntil(obj.next_retry_at, now, depth=1)}" if obj.next_retry_at > now else "due now"
        return format_html(
            '{}<span class="blast-sub blast-retry" title="next retry {}">{}</span>',
            obj.retry_count,
            _when(obj.next_retry_at),
            due,
        )

    @admin.display(description="changed", ordering="status_changed_at")
    def since_change(self, obj: Instance) -> str:
        ago = timesince(obj.status_changed_at, timezone.now(), depth=1)
        return format_html('<span title="status changed {}">{} ago</span>', _when(obj.status_changed_at), ago)

    # --- change page ------------------------------------------------------------

    @admin.display(description="in force now")
    def policy_in_force(self, obj: Instance) -> str:
        if obj.pk is None:
            return "-"
        now = sending.in_force(obj, time.time())
        caps = f"{now.hourly_cap or 'no'} an hour, {now.daily_cap or 'no'} a day"
        notes = []
        if now.warmup_day is not None:
            notes.append(f"warming up: day {now.warmup_day + 1}")
        if now.slowed:
            notes.append("slowed down after rate limits")
        if now.hours_open_at:
            notes.append(
                f"outside the sending hours until {_when(dt.datetime.fromtimestamp(now.hours_open_at, dt.UTC))}"
            )
        elif now.paused_until:
            notes.append("sending paused after repeated limits")
        delays = f"{now.delay_min_s:g}-{now.delay_max_s:g} s between sends"
        return "; ".join([delays, caps, *notes])

    @admin.display(description="QR code")
    def qr_image(self, obj: Instance) -> SafeString | str:
        if obj.pk is None:
            return "-"
        state = qr_state(obj)
        # segno writes only path data: nothing of the code is echoed as markup.
        image = mark_safe(state["svg"]) if state["svg"] else ""
        return format_html(
            '<div class="blast-qr" data-state-url="{}" data-status="{}" data-live="{}">'
            '{}<div class="help blast-qr-note">{}</div></div>',
            reverse("admin:instances_instance_qr_state", args=[obj.pk]),
            state["status"],
            "1" if state["live"] else "",
            image,
            state["note"],
        )

    @admin.display(description="pairing code")
    def pair_code_link(self, obj: Instance) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:instances_instance_pair_code", args=[obj.pk])
        return format_html('<a href="{}">Pair by phone number instead of the QR code</a>', url)

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

    # --- the live QR code, pairing by phone number ---------------------------------

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/qr-state/",
                self.admin_site.admin_view(require_safe(self.qr_state_view)),
                name="instances_instance_qr_state",
            ),
            path(
                "<int:object_id>/pair-code/",
                self.admin_site.admin_view(self.pair_code_view),
                name="instances_instance_pair_code",
            ),
            *super().get_urls(),
        ]

    def qr_state_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """The instance's pairing QR code as the change page's script reads it
        (:func:`qr_state`); another tenant's instance is not found."""
        instance = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, instance):
            raise PermissionDenied
        return JsonResponse(qr_state(instance))

    def pair_code_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A form that asks the gateway for a pairing code for a phone number,
        and the request's state: the code once issued, or why it failed."""
        instance = get_object_or_404(self.get_queryset(request), pk=object_id)
        change_url = reverse("admin:instances_instance_change", args=[instance.pk])
        if not self.has_change_permission(request, instance):
            return HttpResponseRedirect(change_url)
        form = PairCodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                controls.request_pair_code(instance, form.cleaned_data["phone"], actor_of(request))
            except CommandRefused as exc:
                form.add_error(None, str(exc))
            except RateLimited as exc:
                form.add_error(None, f"A code was asked for moments ago: try again in {exc.retry_after_header} s.")
            except LimiterUnavailable:
                form.add_error(None, "The rate limiter is unavailable: try again shortly.")
            else:
                messages.success(request, "Pairing code requested: this page shows it once the gateway answers.")
                return HttpResponseRedirect(request.path)
        instance.refresh_from_db()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Pair {instance.name!r} by phone number",
            "opts": self.model._meta,
            "original": instance,
            "form": form,
            "waiting": instance.pair_state in (PairState.REQUESTED, PairState.SENT),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/instances/instance/pair_code.html", context)

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
        self._act(request, queryset, controls.connect, "Connect requested")

    @admin.action(description="Disconnect selected instances", permissions=["change"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.disconnect, "Disconnect requested")

    @admin.action(description="Force a retry of selected instances", permissions=["change"])
    def force_retry(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.force_retry, "Retry forced")

    @admin.action(description="Reset the circuit breaker of selected instances", permissions=["change"])
    def reset_breaker(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.reset_breaker, "Breaker reset")

    @admin.action(description="Log out (unlink the account of) selected instances", permissions=["change"])
    def logout(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        self._act(request, queryset, controls.logout, "Logout requested")


class PairCodeForm(forms.Form):
    phone = forms.CharField(
        max_length=16,
        validators=[validate_pairing_phone],
        help_text="The account's number in E.164 (+6281234567890); the code is entered on that phone.",
    )


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    tenant_lookup = "instance__tenant"
    list_display = ["instance", "state", "trip_count", "opened_at", "cooldown_until", "updated_at"]
    list_filter = [("state", titled(ChoicesFieldListFilter, "breaker state"))]
    list_select_related = ["instance"]


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    tenant_lookup = "instance__tenant"
    list_display = ["at", "instance", "kind", "reason", "actor", "message"]
    list_filter = [("kind", titled(ChoicesFieldListFilter, "event")), "reason"]
    search_fields = ["instance__name", "instance__key", "actor"]
    list_select_related = ["instance"]
    date_hierarchy = "at"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(OperatorOnlyAdmin, ReadOnlyAdmin):
    """Platform internals: not shown to a tenant's staff."""

    list_display = [
        "worker_id",
        "host",
        "pid",
        "sessions_held",
        "capacity",
        "share_used",
        "last_seen",
        "last_progress_at",
        "stopped_at",
    ]

    @admin.display(description="Of capacity")
    def share_used(self, obj: WorkerHeartbeat) -> str:
        return f"{100 * obj.sessions_held / obj.capacity:.0f} %" if obj.capacity else "-"


class PeriodicTaskAdmin(OperatorOnlyAdmin, BeatPeriodicTaskAdmin):
    """django-celery-beat's page, operators only; the change form of a job of
    the registry (``instances.schedules``) says that its interval is the
    operator's to edit and is kept."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        job = JOBS_BY_NAME.get(obj.name) if obj is not None else None
        if job is not None and "interval" in form.base_fields:
            form.base_fields["interval"].help_text = interval_note(job)
        return form


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
