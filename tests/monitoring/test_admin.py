"""The monitoring admin: webhooks with write-only secrets, scoped to the
tenant of tenant staff, nothing for staff who are neither operators nor
tied to a tenant."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import Client

from instances.models import Tenant, TenantMembership
from monitoring.models import Alert, AlertWebhook, HealthSnapshot
from tests.monitoring.conftest import make_webhook

pytestmark = pytest.mark.django_db

MODELS = ["alertwebhook", "alert", "alertdelivery", "healthsnapshot"]


def _messages_cookie(response: Any) -> list[str]:
    """The messages a response put in the messages cookie, read as anyone
    holding the cookie can read them (it is signed, not encrypted)."""
    morsel = response.cookies.get(CookieStorage.cookie_name)
    if morsel is None or not morsel.value:
        return []
    return [str(m) for m in CookieStorage(response.wsgi_request)._decode(morsel.value) or []]


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
    assert webhook.secret in response.content.decode()  # shown once, on the page that answers the form
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


@pytest.mark.parametrize("tenant_staff", [False, True], ids=["operator", "tenant staff"])
def test_a_generated_secret_is_shown_on_the_page_and_never_put_in_a_message(
    client: Client, tenant: Tenant, tenant_staff: bool
) -> None:
    if tenant_staff:
        user = User.objects.create_user("acme-ops", password="x" * 12, is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__endswith="alertwebhook"))
        TenantMembership.objects.create(user=user, tenant=tenant)
    else:
        user = User.objects.create_superuser("root", password="x" * 12)
    client.force_login(user)
    response = client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "ops", "url": "https://hooks.example.com/blast", "tenant": str(tenant.pk), "secret": ""},
    )
    assert response.status_code == 200, response.content.decode()[-2000:]
    assert "no-store" in response["Cache-Control"]
    webhook = AlertWebhook.objects.get(name="ops")
    shown = re.search(r'id="new-webhook-secret"[^>]*>([^<]+)<', response.content.decode())
    assert shown is not None and shown.group(1) == webhook.secret
    # Not in the messages cookie, nor in any message stored elsewhere.
    assert all(webhook.secret not in message for message in _messages_cookie(response))
    assert all(webhook.secret not in str(message) for message in get_messages(response.wsgi_request))
    assert webhook.secret not in str(response.cookies)
    # Never again.
    page = client.get(f"/admin/monitoring/alertwebhook/{webhook.pk}/change/").content.decode()
    assert webhook.secret not in page


def test_a_typed_secret_is_not_shown_back(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    response = client.post(
        "/admin/monitoring/alertwebhook/add/",
        {"name": "ops", "url": "https://hooks.example.com/blast", "tenant": "", "secret": "typed-secret-value"},
    )
    assert response.status_code == 302
    assert AlertWebhook.objects.get(name="ops").secret == "typed-secret-value"
    assert "typed-secret-value" not in client.get(response["Location"]).content.decode()


def _everything(tenant: Tenant) -> None:
    make_webhook("https://a.example.com/", tenant=tenant, name="acme-hook")
    make_webhook("https://c.example.com/", name="platform-hook")
    Alert.objects.create(kind="breaker_open", status="firing", severity="critical", tenant=tenant, summary="acme-alert")
    HealthSnapshot.objects.create(tenant=None, score=90, status="pass")


@pytest.mark.parametrize("model", MODELS)
def test_staff_tied_to_no_tenant_and_not_operators_see_nothing(client: Client, tenant: Tenant, model: str) -> None:
    _everything(tenant)
    user = User.objects.create_user("drifter", password="x" * 12, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="monitoring"))
    client.force_login(user)
    assert client.get(f"/admin/monitoring/{model}/").status_code == 403
    assert client.get("/admin/").context["app_list"] == []


@pytest.mark.parametrize("model", MODELS)
def test_staff_in_the_operators_group_see_everything(client: Client, tenant: Tenant, model: str) -> None:
    _everything(tenant)
    user = User.objects.create_user("operator", password="x" * 12, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="monitoring"))
    user.groups.add(Group.objects.get(name="Platform operators"))
    client.force_login(user)
    response = client.get(f"/admin/monitoring/{model}/")
    assert response.status_code == 200
    assert response.context["cl"].result_count == response.context["cl"].model.objects.count()
    if model == "alertwebhook":
        html = response.content.decode()
        assert "acme-hook" in html and "platform-hook" in html


def test_the_webhook_filters_of_tenant_staff_name_no_other_tenant(client: Client, tenant: Tenant) -> None:
    other = Tenant.objects.create(slug="other", name="Other Holdings")
    make_webhook("https://a.example.com/", tenant=tenant, name="mine")
    make_webhook("https://b.example.com/", tenant=other, name="theirs")
    user = User.objects.create_user("acme-ops", password="x" * 12, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__endswith="alertwebhook"))
    TenantMembership.objects.create(user=user, tenant=tenant)
    client.force_login(user)
    html = client.get("/admin/monitoring/alertwebhook/").content.decode()
    assert "mine" in html
    assert "Other Holdings" not in html and "theirs" not in html
