"""Routes of the messages, contact lists, campaigns, opt-outs, quota,
auto-replies and webhooks API, whose views are in campaigns.api (one module per resource).
Included at the root by blast/urls.py *before* api.urls, whose last route
answers every other /api/ path with a JSON 404. Paths take no trailing
slash, like the rest of the API."""

from __future__ import annotations

from django.urls import path

from campaigns.api import (
    autoreplies,
    campaigns,
    contact_lists,
    inbound,
    messages,
    numbers,
    opt_outs,
    quota,
    reports,
    webhooks,
)

app_name = "campaigns"

CAMPAIGN = "api/v1/campaigns/<str:id>"
CONTACT_LIST = "api/v1/contact-lists/<str:id>"
WEBHOOK = "api/v1/webhooks/<str:id>"

urlpatterns = [
    # Messages.
    path("api/v1/instances/<str:id>/messages", messages.InstanceMessagesView.as_view(), name="instance-messages"),
    path("api/v1/messages", messages.MessageListView.as_view(), name="messages"),
    # Before messages/<id>, so that "batch" is never read as an id.
    path("api/v1/messages/batch", messages.MessageBatchView.as_view(), name="messages-batch"),
    path("api/v1/messages/<str:id>", messages.MessageDetailView.as_view(), name="message"),
    path("api/v1/quota", quota.QuotaView.as_view(), name="quota"),
    # Number checks.
    path("api/v1/instances/<str:id>/number-checks", numbers.NumberCheckCreateView.as_view(), name="number-checks"),
    path("api/v1/number-checks/<str:id>", numbers.NumberCheckDetailView.as_view(), name="number-check"),
    # Inbound messages.
    path("api/v1/inbound", inbound.InboundListView.as_view(), name="inbound-list"),
    path("api/v1/inbound/<str:id>", inbound.InboundDetailView.as_view(), name="inbound"),
    path(
        "api/v1/instances/<str:id>/conversations/<str:phone>",
        inbound.ConversationView.as_view(),
        name="conversation",
    ),
    # Contact lists.
    path("api/v1/contact-lists", contact_lists.ContactListListView.as_view(), name="contact-lists"),
    path(CONTACT_LIST, contact_lists.ContactListDetailView.as_view(), name="contact-list"),
    path(f"{CONTACT_LIST}/upload", contact_lists.ContactListUploadView.as_view(), name="contact-list-upload"),
    path(f"{CONTACT_LIST}/contacts", contact_lists.ContactListContactsView.as_view(), name="contacts"),
    path(f"{CONTACT_LIST}/contacts/<str:contact_id>", contact_lists.ContactDetailView.as_view(), name="contact"),
    # Campaigns.
    path("api/v1/campaigns", campaigns.CampaignListView.as_view(), name="campaigns"),
    path(CAMPAIGN, campaigns.CampaignDetailView.as_view(), name="campaign"),
    path(f"{CAMPAIGN}/start", campaigns.CampaignStartView.as_view(), name="campaign-start"),
    path(f"{CAMPAIGN}/pause", campaigns.CampaignPauseView.as_view(), name="campaign-pause"),
    path(f"{CAMPAIGN}/resume", campaigns.CampaignResumeView.as_view(), name="campaign-resume"),
    path(f"{CAMPAIGN}/cancel", campaigns.CampaignCancelView.as_view(), name="campaign-cancel"),
    path(f"{CAMPAIGN}/report", reports.CampaignReportView.as_view(), name="campaign-report"),
    path(f"{CAMPAIGN}/report.csv", reports.CampaignReportCsvView.as_view(), name="campaign-report-csv"),
    # Opt-outs.
    path("api/v1/opt-outs", opt_outs.OptOutListView.as_view(), name="opt-outs"),
    path("api/v1/opt-outs/<str:phone>", opt_outs.OptOutDetailView.as_view(), name="opt-out"),
    # Auto-reply rules.
    path("api/v1/auto-replies", autoreplies.AutoReplyListView.as_view(), name="auto-replies"),
    path("api/v1/auto-replies/<str:id>", autoreplies.AutoReplyDetailView.as_view(), name="auto-reply"),
    # Status webhooks.
    path("api/v1/webhooks", webhooks.WebhookListView.as_view(), name="webhooks"),
    path(WEBHOOK, webhooks.WebhookDetailView.as_view(), name="webhook"),
    path(f"{WEBHOOK}/rotate-secret", webhooks.WebhookSecretView.as_view(), name="webhook-rotate-secret"),
    path(f"{WEBHOOK}/deliveries", webhooks.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
]
