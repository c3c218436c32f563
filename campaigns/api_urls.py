"""Routes of the messages, contact lists, campaigns, opt-outs, quota and
webhooks API. Included at the root by blast/urls.py *before* api.urls, whose
last route answers every other /api/ path with a JSON 404. Paths take no
trailing slash, like the rest of the API."""

from __future__ import annotations

from django.urls import path

from campaigns import views

app_name = "campaigns"

CAMPAIGN = "api/v1/campaigns/<str:id>"
CONTACT_LIST = "api/v1/contact-lists/<str:id>"
WEBHOOK = "api/v1/webhooks/<str:id>"

urlpatterns = [
    # Messages.
    path("api/v1/instances/<str:id>/messages", views.InstanceMessagesView.as_view(), name="instance-messages"),
    path("api/v1/messages", views.MessageListView.as_view(), name="messages"),
    # Before messages/<id>, so that "batch" is never read as an id.
    path("api/v1/messages/batch", views.MessageBatchView.as_view(), name="messages-batch"),
    path("api/v1/messages/<str:id>", views.MessageDetailView.as_view(), name="message"),
    path("api/v1/quota", views.QuotaView.as_view(), name="quota"),
    # Contact lists.
    path("api/v1/contact-lists", views.ContactListListView.as_view(), name="contact-lists"),
    path(CONTACT_LIST, views.ContactListDetailView.as_view(), name="contact-list"),
    path(f"{CONTACT_LIST}/upload", views.ContactListUploadView.as_view(), name="contact-list-upload"),
    path(f"{CONTACT_LIST}/contacts", views.ContactListContactsView.as_view(), name="contacts"),
    path(f"{CONTACT_LIST}/contacts/<str:contact_id>", views.ContactDetailView.as_view(), name="contact"),
    # Campaigns.
    path("api/v1/campaigns", views.CampaignListView.as_view(), name="campaigns"),
    path(CAMPAIGN, views.CampaignDetailView.as_view(), name="campaign"),
    path(f"{CAMPAIGN}/start", views.CampaignStartView.as_view(), name="campaign-start"),
    path(f"{CAMPAIGN}/pause", views.CampaignPauseView.as_view(), name="campaign-pause"),
    path(f"{CAMPAIGN}/resume", views.CampaignResumeView.as_view(), name="campaign-resume"),
    path(f"{CAMPAIGN}/cancel", views.CampaignCancelView.as_view(), name="campaign-cancel"),
    path(f"{CAMPAIGN}/report", views.CampaignReportView.as_view(), name="campaign-report"),
    path(f"{CAMPAIGN}/report.csv", views.CampaignReportCsvView.as_view(), name="campaign-report-csv"),
    # Opt-outs.
    path("api/v1/opt-outs", views.OptOutListView.as_view(), name="opt-outs"),
    path("api/v1/opt-outs/<str:phone>", views.OptOutDetailView.as_view(), name="opt-out"),
    # Status webhooks.
    path("api/v1/webhooks", views.WebhookListView.as_view(), name="webhooks"),
    path(WEBHOOK, views.WebhookDetailView.as_view(), name="webhook"),
    path(f"{WEBHOOK}/rotate-secret", views.WebhookSecretView.as_view(), name="webhook-rotate-secret"),
    path(f"{WEBHOOK}/deliveries", views.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
]
