"""The monitoring admin: webhooks with write-only secrets, scoped to the
tenant of tenant staff."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from instances.models import Tenant, TenantMembership
from monitoring.models import AlertWebhook
from tests.monitoring.conftest import make_webhook

pytestmark = pytest.mark.django_db


def test_a_new_webhook_gets_a_secret_shown_once(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    response = client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "ops", "url": "https://hooks.example.com/blast", "tenant": "", "enabled": "on", "secret": ""},
        follow=True,
    )
    assert response.status_code == 200
    webhook = AlertWebhook.objects.get(name="ops")
    assert webhook.tenant is None and len(webhook.secret) > 20
    assert webhook.secret in response.content.decode()  # shown once, in the message
    page = client.get(f"/admin/monitoring/alertwebhook/{webhook.pk}/change/").content.decode()
    assert webhook.secret not in page and webhook.secret_encrypted not in page

    # Saved without a secret: the current one is kept; with one: replaced.
    client.post(
        f"/admin/monitoring/alertwebhook/{webhook.pk}/change/",
        {"name": "ops", "url": "https://hooks.example.com/blast", "tenant": "", "enabled": "on", "secret": ""},
    )
    assert AlertWebhook.objects.get(pk=webhook.pk).secret == webhook.secret
    client.post(
        f"/admin/monitoring/alertwebhook/{webhook.pk}/change/",
        {"name": "ops", "url": "https://hooks.example.com/blast", "tenant": "", "enabled": "on", "secret": "new-one"},
    )
    assert AlertWebhook.objects.get(pk=webhook.pk).secret == "new-one"


def test_a_webhook_url_must_be_http(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    response = client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "bad", "url": "ftp://example.com/x", "tenant": "", "enabled": "on", "secret": ""},
    )
    assert response.status_code == 200 and "http:// or https://" in response.content.decode()
    assert not AlertWebhook.objects.exists()


def test_tenant_staff_manage_their_tenants_webhooks_only(client: Client, tenant: Tenant) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    make_webhook("https://a.example.com/", tenant=tenant, name="mine")
    make_webhook("https://b.example.com/", tenant=other, name="theirs")
    make_webhook("https://c.example.com/", name="platform")
    user = User.objects.create_user("acme-ops", password="x" * 12, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__endswith="alertwebhook"))
    TenantMembership.objects.create(user=user, tenant=tenant)
    client.force_login(user)

    listing = client.get("/admin/monitoring/alertwebhook/").content.decode()
    assert "mine" in listing and "theirs" not in listing and "platform" not in listing
    # Whatever tenant the form names, the webhook is the user's tenant's.
    client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "new", "url": "https://d.example.com/", "tenant": str(tenant.pk), "enabled": "on", "secret": "s"},
    )
    assert AlertWebhook.objects.get(name="new").tenant == tenant
    response = client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "sneaky", "url": "https://e.example.com/", "tenant": str(other.pk), "enabled": "on", "secret": "s"},
    )
    assert not AlertWebhook.objects.filter(name="sneaky", tenant=other).exists()
    assert response.status_code == 200  # the form refuses the other tenant
