"""Operator pages for messages, contact lists (with CSV upload), campaigns
(with start/pause/resume/cancel), opt-outs, quotas and status webhooks.

Tenancy as in instances.admin: a staff user tied to a tenant sees and
changes only that tenant's objects (:class:`~instances.admin.TenantScopedAdmin`
scopes lists, pages, list filters and the choices of contact lists,
campaigns and a campaign's instances); staff who are neither operators nor
tied to a tenant see nothing. Campaign moves go through
``campaigns.lifecycle`` with actor ``user:<username>``, never a form save; a
campaign's settings can be edited only while it is a draft. Messages, their
events, inbound messages and webhook deliveries are written by the platform
and read-only here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.filters import ChoicesFieldListFilter
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns import autoreplies, contacts, lifecycle, optouts, phones, reports, states, webhooks
from campaigns.models import (
    AutoReplyRule,
    Campaign,
    CampaignStatus,
    Contact,
    ContactList,
    InboundMessage,
    Message,
    MessageEvent,
    OptOut,
    OptOutSource,
    TenantQuota,
    TenantWebhook,
    WebhookDelivery,
)
from campaigns.templating import TemplateError
from campaigns.templating import parse as parse_template
from instances import schedule
from instances.admin import ReadOnlyAdmin, TenantScopedAdmin, actor_of, shown_once, titled
from instances.models import access_of

NEW_SECRET_ATTRIBUTE = "_blast_new_webhook_secret"


class CampaignScopedAdmin(TenantScopedAdmin):
    """The campaign pages' base: :class:`~instances.admin.TenantScopedAdmin`
    scopes the choices of contact lists, campaigns and instances too (their
    admins are tenant-scoped)."""


# --- contact lists ---------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, UTF-8, a header row with a 'phone' column and any custom fields.")
    region = forms.CharField(
        required=False, max_length=2, help_text="Country of numbers written without a country code (e.g. BR)."
    )

    def clean_region(self) -> str:
        region = self.cleaned_data["region"].strip().upper()
        if region and not phones.is_region(region):
            raise ValidationError(f"'{region}' is not a country code such as BR or US.")
        return region


@admin.register(ContactList)
class ContactListAdmin(CampaignScopedAdmin):
    list_display = ["name", "tenant", "contact_count", "fields_shown", "updated_at"]
    list_filter = ["tenant"]
    search_fields = ["name"]
    list_select_related = ["tenant"]
    readonly_fields = ["key", "fields", "created_at", "updated_at", "upload_link"]
    change_form_template = "admin/campaigns/contactlist/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactList]:
        return super().get_queryset(request).annotate(contact_total=Count("contacts"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["tenant", "name"]
        return ["tenant", "name", "key", "fields", "upload_link", "created_at", "updated_at"]

    @admin.display(description="contacts", ordering="contact_total")
    def contact_count(self, obj: ContactList) -> int:
        return int(getattr(obj, "contact_total", None) or obj.contacts.count())

    @admin.display(description="custom fields")
    def fields_shown(self, obj: ContactList) -> str:
        return ", ".join(obj.fields or []) or "-"

    @admin.display(description="upload")
    def upload_link(self, obj: ContactList) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:campaigns_contactlist_upload", args=[obj.pk])
        contacts_url = reverse("admin:campaigns_contact_changelist") + f"?contact_list__id__exact={obj.pk}"
        return format_html(
            '<a href="{}">Upload a CSV file</a> &nbsp; <a href="{}">See the contacts</a>', url, contacts_url
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/upload/",
                self.admin_site.admin_view(self.upload_view),
                name="campaigns_contactlist_upload",
            ),
            *super().get_urls(),
        ]

    def upload_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A form to upload a CSV into the list; answers what it did, row errors included.

        Sync, and run like the API's upload (``ContactListUploadView``): in a
        thread of its request, with the import's work bounded by the file.
        """
        contact_list = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, contact_list):
            return HttpResponseRedirect(reverse("admin:campaigns_contactlist_changelist"))
        result = None
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            limit = int(contacts.settings.BLAST_CSV_MAX_BYTES)
            if upload.size > limit:
                form.add_error("file", f"The file is {upload.size} bytes; at most {limit} are accepted.")
            else:
                try:
                    result = contacts.import_csv(contact_list, upload.read(), form.cleaned_data["region"] or None)
                except contacts.CsvRejected as exc:
                    form.add_error("file", str(exc))
                except contacts.ImportsBusy as exc:
                    form.add_error("file", f"{exc} Try again in a moment.")
                else:
                    messages.success(
                        request,
                        f"{result.rows} rows read: {result.created} contacts added, {result.updated} updated, "
                        f"{result.duplicates} duplicates merged, {result.invalid} rows refused.",
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload contacts into {contact_list.name!r}",
            "opts": self.model._meta,
            "original": contact_list,
            "form": form,
            "result": result,
            "change_url": reverse("admin:campaigns_contactlist_change", args=[contact_list.pk]),
        }
        return TemplateResponse(request, "admin/campaigns/contactlist/upload.html", context)


@admin.register(Contact)
class ContactAdmin(CampaignScopedAdmin):
    tenant_lookup = "contact_list__tenant"
    list_display = ["phone", "contact_list", "fields", "updated_at"]
    list_filter = ["contact_list"]
    search_fields = ["phone"]
    list_select_related = ["contact_list"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: Contact, form: ModelForm[Any], change: bool) -> None:
        try:
            obj.phone = phones.normalise(obj.phone)
        except phones.InvalidPhone:
            pass  # the form's clean refused it already
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)

        def clean_phone(self: Any) -> str:
            try:
                return phones.normalise(self.cleaned_data["phone"])
            except phones.InvalidPhone as exc:
                raise ValidationError(str(exc)) from None

        form.clean_phone = clean_phone
        return form


# --- campaigns ---------------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks what the API checks: template syntax and fields, timezone,
    allowed hours, delays."""

    class Meta:
        model = Campaign
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        template = cleaned.get("template") or ""
        contact_list = cleaned.get("contact_list")
        if template:
            try:
                parsed = parse_template(template)
                if contact_list is not None:
                    parsed.check_fields(contact_list.fields or [])
            except TemplateError as exc:
                self.add_error("template", str(exc))
        try:
            schedule.allowed_hours(
                cleaned.get("allowed_start"),
                cleaned.get("allowed_end"),
                cleaned.get("time_zone") or "UTC",
                cleaned.get("allowed_weekdays") or [],
            )
        except schedule.ScheduleError as exc:
            self.add_error(None, str(exc))
        low, high = cleaned.get("send_delay_min_s"), cleaned.get("send_delay_max_s")
        for name, value in (("send_delay_min_s", low), ("send_delay_max_s", high)):
            if value is not None and not 0 <= value <= 86_400:
                self.add_error(name, "A delay is 0 to 86400 seconds.")
        if low is not None and high is not None and low > high:
            self.add_error("send_delay_max_s", "The maximum delay is below the minimum.")
        media, tenant = cleaned.get("media"), cleaned.get("tenant")
        if media is not None and tenant is not None and media.tenant_id != tenant.pk:
            self.add_error("media", "This media belongs to another tenant.")
        return cleaned


LIFECYCLE_FIELDS = [
    "key",
    "status",
    "pause_reason",
    "status_message",
    "scheduled_at",
    "started_at",
    "paused_at",
    "completed_at",
    "cancelled_at",
    "expanded_count",
    "expanded_at",
    "window_opens_at",
    "created_at",
    "updated_at",
    "report",
]
SETTINGS_FIELDS = [
    "tenant",
    "name",
    "template",
    "contact_list",
    "instances",
    "rotation",
    "start_at",
    "time_zone",
    "allowed_start",
    "allowed_end",
    "allowed_weekdays",
    "send_delay_min_s",
    "send_delay_max_s",
    "media",
    "check_numbers",
    "deadline",
    "reply_guard_percent",
    "reply_guard_after",
]


@admin.register(Campaign)
class CampaignAdmin(CampaignScopedAdmin):
    form = CampaignForm
    list_display = ["name", "tenant", "status", "pause_reason", "contact_list", "start_at", "progress", "created_at"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "key"]
    list_select_related = ["tenant", "contact_list"]
    filter_horizontal = ["instances"]
    actions = ["start", "pause", "resume", "cancel"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": SETTINGS_FIELDS})]
        return [(None, {"fields": SETTINGS_FIELDS}), ("Lifecycle", {"fields": LIFECYCLE_FIELDS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        if obj is None:
            return []
        if states.editable(obj.status):
            return [*LIFECYCLE_FIELDS, "tenant"]
        return [*LIFECYCLE_FIELDS, *(f for f in SETTINGS_FIELDS if f != "name")]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status not in (
            CampaignStatus.DRAFT,
            CampaignStatus.COMPLETED,
            CampaignStatus.CANCELLED,
        ):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="progress")
    def progress(self, obj: Campaign) -> str:
        if obj.status == CampaignStatus.DRAFT:
            return "-"
        data = reports.report(obj, timezone.now())["progress"]
        return f"{data['done']}/{data['done'] + data['remaining']} ({data['percent']}%)"

    @admin.display(description="report")
    def report(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        data = reports.report(obj, timezone.now())
        counts = ", ".join(f"{status} {n}" for status, n in data["counts"].items())
        failures = ", ".join(f"{reason} {n}" for reason, n in data["failures"].items()) or "none"
        rate = data["throughput"]["per_minute_last_10_min"]
        messages_url = reverse("admin:campaigns_message_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html(
            "{} of {} recipients done ({}%). Messages: {}. Failures: {}. Last 10 minutes: {} per minute. "
            "<a href='{}'>Messages</a>",
            data["progress"]["done"],
            data["recipients"],
            data["progress"]["percent"],
            counts,
            failures,
            rate if rate is not None else "-",
            messages_url,
        )

    def _act(
        self, request: HttpRequest, queryset: QuerySet[Campaign], move: Callable[..., Campaign], done: str
    ) -> None:
        actor = actor_of(request)
        moved, refused = 0, []
        for campaign in queryset:
            try:
                move(campaign.pk, actor)
            except states.IllegalTransition as exc:
                refused.append(f"{campaign.name}: {exc}")
            else:
                moved += 1
        noun = "campaign" if moved == 1 else "campaigns"
        if moved:
            messages.success(request, f"{done} {moved} {noun}.")
        if refused:
            messages.warning(request, f"Refused for {len(refused)}: " + " ".join(refused))

    @admin.action(description="Start selected campaigns", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, lifecycle.start, "Started")

    @admin.action(description="Pause selected campaigns", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, lifecycle.pause, "Paused")

    @admin.action(description="Resume selected campaigns", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, lifecycle.resume, "Resumed")

    @admin.action(description="Cancel selected campaigns", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._act(request, queryset, lifecycle.cancel, "Cancelled")


# --- messages and what the platform records -------------------------------------------------------


@admin.register(Message)
class MessageAdmin(CampaignScopedAdmin, ReadOnlyAdmin):
    list_display = ["key", "to", "instance", "campaign", "status", "failure_reason", "attempts", "created_at"]
    list_filter = ["status", "failure_reason", "tenant"]
    search_fields = ["key", "to", "idempotency_key", "server_id"]
    list_select_related = ["instance", "campaign"]
    raw_id_fields = ["instance", "campaign", "contact", "media"]
    show_full_result_count = False


@admin.register(MessageEvent)
class MessageEventAdmin(CampaignScopedAdmin, ReadOnlyAdmin):
    list_display = ["at", "message", "status", "instance", "campaign"]
    list_filter = ["status"]
    raw_id_fields = ["message", "instance", "campaign"]
    show_full_result_count = False


@admin.register(InboundMessage)
class InboundMessageAdmin(CampaignScopedAdmin, ReadOnlyAdmin):
    list_display = ["received_at", "sender", "instance", "action", "text", "campaign", "auto_reply_rule"]
    list_filter = [("action", titled(ChoicesFieldListFilter, "action taken")), "tenant"]
    search_fields = ["sender", "server_id", "key"]
    list_select_related = ["instance", "campaign", "auto_reply_rule"]
    raw_id_fields = ["in_reply_to", "campaign", "auto_reply", "auto_reply_rule"]


class AutoReplyForm(forms.ModelForm):  # type: ignore[type-arg]
    """Checks what the API checks: the pattern, a reply, one tenant."""

    class Meta:
        model = AutoReplyRule
        fields = ["tenant", *autoreplies.RULE_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        problem = autoreplies.pattern_problem(cleaned.get("match") or "", cleaned.get("pattern") or "")
        if problem and "pattern" not in self.errors:
            self.add_error("pattern", problem)
        media = cleaned.get("reply_media")
        if media is None and not (cleaned.get("reply_text") or "").strip():
            self.add_error("reply_text", "Give a reply text, a reply media, or both.")
        tenant = cleaned.get("tenant")
        for name in ("instance", "reply_media"):
            owned = cleaned.get(name)
            if owned is not None and tenant is not None and owned.tenant_id != tenant.pk:
                self.add_error(name, "This belongs to another tenant.")
        cooldown = cleaned.get("cooldown_s")
        if cooldown is not None and cooldown < 10:
            self.add_error("cooldown_s", "At least 10 seconds, so that two bots never answer each other for ever.")
        return cleaned


@admin.register(AutoReplyRule)
class AutoReplyRuleAdmin(CampaignScopedAdmin):
    form = AutoReplyForm
    list_display = ["name", "instance", "match", "pattern", "cooldown_s", "priority", "enabled", "answered"]
    list_filter = ["enabled", "match", "tenant"]
    search_fields = ["name", "pattern"]
    list_select_related = ["instance"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AutoReplyRule]:
        return super().get_queryset(request).annotate(answered_count=Count("inbound_messages"))

    @admin.display(description="messages answered", ordering="answered_count")
    def answered(self, obj: AutoReplyRule) -> int:
        return int(getattr(obj, "answered_count", 0))


@admin.register(OptOut)
class OptOutAdmin(CampaignScopedAdmin):
    list_display = ["phone", "tenant", "source", "instance", "note", "created_at"]
    list_filter = ["source", "tenant"]
    search_fields = ["phone"]
    list_select_related = ["tenant", "instance"]
    fields = ["tenant", "phone", "note"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)

        def clean_phone(self: Any) -> str:
            try:
                return phones.normalise(self.cleaned_data["phone"])
            except phones.InvalidPhone as exc:
                raise ValidationError(str(exc)) from None

        form.clean_phone = clean_phone
        return form

    def save_model(self, request: HttpRequest, obj: OptOut, form: ModelForm[Any], change: bool) -> None:
        tenant = self.tenant_for(request, obj.tenant)
        row, _ = optouts.add(tenant, obj.phone, OptOutSource.ADMIN, note=obj.note)
        obj.pk, obj.tenant, obj.source, obj.created_at = row.pk, tenant, row.source, row.created_at
        obj._state.adding = False


@admin.register(TenantQuota)
class TenantQuotaAdmin(CampaignScopedAdmin):
    """Operators set quotas; a tenant's staff can only read theirs."""

    list_display = ["tenant", "monthly_messages"]
    list_select_related = ["tenant"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access_of(request.user).operator and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access_of(request.user).operator and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access_of(request.user).operator and super().has_delete_permission(request, obj)


class WebhookForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = TenantWebhook
        fields = ["tenant", "instance", "name", "url", "message_events", "instance_events", "enabled"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        problem = webhooks.url_problem(url)
        if problem:
            raise ValidationError(problem)
        return url

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        instance, tenant = cleaned.get("instance"), cleaned.get("tenant")
        if instance is not None and tenant is not None and instance.tenant_id != tenant.pk:
            self.add_error("instance", "This instance belongs to another tenant.")
        return cleaned


@admin.register(TenantWebhook)
class TenantWebhookAdmin(CampaignScopedAdmin):
    form = WebhookForm
    list_display = ["name", "tenant", "instance", "message_events", "instance_events", "enabled", "created_at"]
    list_filter = ["enabled", "tenant"]
    search_fields = ["name"]
    list_select_related = ["tenant", "instance"]

    def save_model(self, request: HttpRequest, obj: TenantWebhook, form: ModelForm[Any], change: bool) -> None:
        if not change:
            setattr(request, NEW_SECRET_ATTRIBUTE, obj.set_secret())
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: TenantWebhook, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, NEW_SECRET_ATTRIBUTE, None)
        if secret is None:  # pragma: no cover - defensive
            return super().response_add(request, obj, post_url_continue)
        return shown_once(
            self,
            request,
            "admin/campaigns/tenantwebhook/created.html",
            f"Webhook {obj.name!r} created",
            webhook=obj,
            secret=secret,
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(CampaignScopedAdmin, ReadOnlyAdmin):
    tenant_lookup = "webhook__tenant"
    list_display = ["uid", "webhook", "status", "event_count", "attempts", "last_status_code", "error", "created_at"]
    list_filter = ["status", "webhook__tenant"]
    list_select_related = ["webhook"]
    show_full_result_count = False
