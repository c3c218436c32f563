"""Who sees what in the admin and the dashboard, on every page the admin has.

The cast: tenants Acme and Rival Holdings, each with one object of every
kind the admin shows (named ``acme-...`` and ``rival-...``), a platform-wide
alert webhook, a worker heartbeat, an enabled gateway and a disabled one.
Every user below holds every permission there is, so that what they see
is decided by who they are, never by a permission someone forgot:

- Alice is staff tied to Acme;
- Olga is staff in the "Platform operators" group;
- Nemo is staff tied to no tenant and in no group: he must see nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.db.models.signals import post_delete
from django.test import Client
from django.urls import reverse

from api.models import ApiKey
from campaigns.inbound import handle_inbound
from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    Message,
    MessageEvent,
    TenantQuota,
    TenantWebhook,
    WebhookDelivery,
)
from instances.models import (
    ConnectionEvent,
    EventKind,
    Gateway,
    Instance,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
)
from monitoring.models import Alert, AlertDelivery, AlertWebhook, HealthSnapshot

pytestmark = pytest.mark.django_db

PASSWORD = "tenancy-test-password-1"
OPERATORS = "Platform operators"
ACME_PHONE = "+12015550101"
RIVAL_PHONE = "+12015550909"
# Nothing of these may reach a page Alice sees.
RIVAL_MARKERS = ["Rival Holdings", "rival-", RIVAL_PHONE, "platform-alerts"]
GATEWAY_HOSTS = "10.20.30."

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


def _model_id(model: Any) -> str:
    return str(model._meta.label)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    acme: Tenant
    rival: Tenant
    gateway: Gateway
    retired: Gateway
    alice: User
    olga: User
    nemo: User


def _staff(username: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    return user


def _populate(tenant: Tenant, prefix: str, phone: str, gateway: Gateway) -> None:
    """One of everything the admin lists, for ``tenant``, named ``prefix-...``."""
    instance = Instance.objects.create(tenant=tenant, name=f"{prefix}-sales", gateway=gateway)
    ConnectionEvent.objects.create(instance=instance, kind=EventKind.READY, message=f"{prefix}-ready")
    ApiKey.objects.create_key(tenant, f"{prefix}-key")
    contact_list = ContactList.objects.create(tenant=tenant, name=f"{prefix}-list")
    contact = Contact.objects.create(contact_list=contact_list, phone=phone)
    campaign = Campaign.objects.create(tenant=tenant, name=f"{prefix}-spring", template="Hi", contact_list=contact_list)
    campaign.instances.set([instance])
    message = Message.objects.create(
        tenant=tenant, instance=instance, campaign=campaign, contact=contact, to=phone, text=f"{prefix}-text"
    )
    MessageEvent.objects.create(message=message, tenant=tenant, instance=instance, campaign=campaign, status="sent")
    handle_inbound(instance.pk, f"{prefix}-srv-1", phone, "STOP")  # an inbound message and an opt-out
    TenantQuota.objects.create(tenant=tenant, monthly_messages=100)
    webhook = TenantWebhook(tenant=tenant, instance=instance, name=f"{prefix}-hook", url="https://hooks.example.com/x")
    webhook.save()
    WebhookDelivery.objects.create(webhook=webhook, payload={"events": []}, error=f"{prefix}-delivery")
    alerts = AlertWebhook.objects.create(name=f"{prefix}-alerts", url="https://alerts.example.com/x", tenant=tenant)
    alert = Alert.objects.create(
        kind="breaker_open",
        status="firing",
        severity="critical",
        tenant=tenant,
        instance=instance,
        summary=f"{prefix}-alert",
    )
    AlertDelivery.objects.create(alert=alert, webhook=alerts, error=f"{prefix}-alert-delivery")
    HealthSnapshot.objects.create(tenant=tenant, score=50, status=f"{prefix[:2]}")


@pytest.fixture
def world(db: Any) -> World:
    acme = Tenant.objects.create(slug="acme", name="Acme Corp")
    rival = Tenant.objects.create(slug="rival", name="Rival Holdings")
    gateway = Gateway.objects.create(name="gw-main", url="ws://10.20.30.41:4445")
    retired = Gateway.objects.create(name="gw-retired", url="ws://10.20.30.40:4444", enabled=False)
    _populate(acme, "acme", ACME_PHONE, gateway)
    _populate(rival, "rival", RIVAL_PHONE, retired)
    AlertWebhook.objects.create(name="platform-alerts", url="https://alerts.example.com/p")
    HealthSnapshot.objects.create(tenant=None, score=90, status="pass")
    WorkerHeartbeat.objects.create(worker_id="worker-hb-1", host="h", pid=1)

    alice = _staff("alice")
    TenantMembership.objects.create(user=alice, tenant=acme)
    TenantMembership.objects.create(user=_staff("bob"), tenant=rival)
    olga = _staff("olga")
    olga.groups.add(Group.objects.get_or_create(name=OPERATORS)[0])
    return World(acme=acme, rival=rival, gateway=gateway, retired=retired, alice=alice, olga=olga, nemo=_staff("nemo"))


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _changelist(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _filters(html: str) -> str:
    """The sidebar of a changelist: its list filters."""
    found = re.search(r'<nav id="changelist-filter".*?</nav>', html, re.S)
    return found.group(0) if found else ""


# --- staff who are neither operators nor tied to a tenant -------------------------


def test_the_operators_group_exists_after_migrating(db: Any) -> None:
    from instances.models import OPERATORS_GROUP

    assert OPERATORS_GROUP == OPERATORS
    assert Group.objects.filter(name=OPERATORS).exists()


def test_staff_tied_to_no_tenant_and_not_operators_see_no_app_on_the_index(world: World) -> None:
    response = login(world.nemo).get(reverse("admin:index"))
    assert response.status_code == 200
    assert response.context["app_list"] == []
    html = response.content.decode()
    assert "Instances" not in html and "Acme Corp" not in html


@pytest.mark.parametrize("model", REGISTERED, ids=_model_id)
def test_staff_tied_to_no_tenant_and_not_operators_get_no_page_of_any_model(world: World, model: Any) -> None:
    client = login(world.nemo)
    opts = model._meta
    listing = client.get(_changelist(model))
    assert listing.status_code == 403, (opts.label, listing.status_code)
    assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403
    obj = model._default_manager.order_by("pk").first()
    if obj is not None:
        for view in ("change", "history", "delete"):
            page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk]))
            assert page.status_code in (302, 403), (opts.label, view, page.status_code)
            assert str(obj) not in page.content.decode()


def test_staff_tied_to_no_tenant_and_not_operators_change_and_delete_nothing(world: World) -> None:
    instance = Instance.objects.get(name="acme-sales")
    client = login(world.nemo)
    url = reverse("admin:instances_instance_changelist")
    response = client.post(url, {"action": "connect", "_selected_action": [instance.pk], "index": 0})
    assert response.status_code == 403
    response = client.post(reverse("admin:instances_instance_delete", args=[instance.pk]), {"post": "yes"})
    assert response.status_code in (302, 403)
    assert Instance.objects.filter(pk=instance.pk).exists()
    response = client.post(reverse("admin:auth_user_change", args=[world.nemo.pk]), {"is_superuser": "on"})
    world.nemo.refresh_from_db()
    assert response.status_code == 403 and not world.nemo.is_superuser


def test_staff_tied_to_no_tenant_and_not_operators_get_no_dashboard(world: World) -> None:
    assert login(world.nemo).get("/dashboard/").status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_dashboard_websocket_refuses_staff_tied_to_no_tenant_and_not_operators() -> None:
    from channels.db import database_sync_to_async
    from django.db import connection

    from monitoring.consumers import CLOSE_FORBIDDEN, DashboardConsumer

    try:
        nemo = await database_sync_to_async(_staff)("nemo")
        # The user as Channels' auth middleware puts it in the scope.
        communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
        communicator.scope["user"] = nemo
        connected, code = await communicator.connect()
        assert not connected
        assert code == CLOSE_FORBIDDEN
    finally:
        await database_sync_to_async(lambda: connection.close())()


# --- operators ------------------------------------------------------------------------


@pytest.mark.parametrize("model", REGISTERED, ids=_model_id)
def test_staff_in_the_operators_group_list_every_model(world: World, model: Any) -> None:
    response = login(world.olga).get(_changelist(model))
    assert response.status_code == 200, (model._meta.label, response.status_code)
    assert response.context["cl"].result_count == model._default_manager.count()


def test_staff_in_the_operators_group_see_every_tenant_and_the_platform(world: World) -> None:
    client = login(world.olga)
    html = client.get(_changelist(Instance)).content.decode()
    assert "acme-sales" in html and "rival-sales" in html
    assert "Rival Holdings" in _filters(html)
    state = client.get("/dashboard/")
    assert state.status_code == 200
    assert state.context["tenant"] is None  # the platform view
    assert state.context["state"]["summary"]["scope"] == "platform"
    assert state.context["state"]["instances"]["total"] == 2


def test_a_membership_confines_even_a_member_of_the_operators_group(world: World) -> None:
    world.alice.groups.add(Group.objects.get(name=OPERATORS))
    html = login(world.alice).get(_changelist(Instance)).content.decode()
    assert "acme-sales" in html and "rival-sales" not in html


def test_tenant_staff_see_none_of_the_platforms_internals(world: World) -> None:
    client = login(world.alice)
    for model in (User, Group, WorkerHeartbeat, TenantMembership):
        assert client.get(_changelist(model)).status_code == 403, model
    app_labels = {app["app_label"] for app in client.get(reverse("admin:index")).context["app_list"]}
    assert "auth" not in app_labels and "django_celery_beat" not in app_labels


# --- tenant staff: pages and sidebar filters ---------------------------------------


@pytest.mark.parametrize("model", REGISTERED, ids=_model_id)
def test_no_page_tenant_staff_see_names_another_tenant_or_where_a_gateway_lives(world: World, model: Any) -> None:
    client = login(world.alice)
    listing = client.get(_changelist(model))
    assert listing.status_code in (200, 403), (model._meta.label, listing.status_code)
    if listing.status_code == 403:
        return
    pages = {"list": listing.content.decode()}
    for obj in listing.context["cl"].queryset:
        opts = model._meta
        page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert page.status_code == 200, (opts.label, obj.pk, page.status_code)
        pages[f"change {obj.pk}"] = page.content.decode()
    for name, html in pages.items():
        for marker in RIVAL_MARKERS:
            assert marker not in html, (model._meta.label, name, marker)
        assert GATEWAY_HOSTS not in html, (model._meta.label, name)


def test_the_gateway_filter_of_tenant_staff_names_only_enabled_gateways_they_use(world: World) -> None:
    backup = Gateway.objects.create(name="gw-backup", url="ws://10.20.30.43:1")
    Instance.objects.create(tenant=world.acme, name="acme-support", gateway=backup)
    Instance.objects.create(tenant=world.acme, name="acme-legacy", gateway=world.retired)
    Gateway.objects.create(name="gw-unused", url="ws://10.20.30.42:1")
    sidebar = _filters(login(world.alice).get(_changelist(Instance)).content.decode())
    assert "gw-main" in sidebar and "gw-backup" in sidebar
    assert "gw-retired" not in sidebar and "gw-unused" not in sidebar
    assert "ws://" not in sidebar


def test_related_filters_of_tenant_staff_list_only_their_tenants_objects(world: World) -> None:
    other_list = ContactList.objects.create(tenant=world.acme, name="acme-vip")
    Contact.objects.create(contact_list=other_list, phone="+12015550102")
    client = login(world.alice)
    contacts = _filters(client.get(_changelist(Contact)).content.decode())
    assert "acme-list" in contacts and "acme-vip" in contacts
    assert "rival-list" not in contacts
    alert_webhooks = _filters(client.get(_changelist(AlertWebhook)).content.decode())
    assert "Rival Holdings" not in alert_webhooks and "Acme Corp" not in alert_webhooks  # no tenant filter


def test_operators_see_every_choice_in_the_filters(world: World) -> None:
    sidebar = _filters(login(world.olga).get(_changelist(Instance)).content.decode())
    assert "gw-main" in sidebar and "gw-retired" in sidebar
    assert "Acme Corp" in sidebar and "Rival Holdings" in sidebar


# --- deleting a tenant --------------------------------------------------------------


def _tenant_with_staff(slug: str, *usernames: str) -> tuple[Tenant, list[User]]:
    """A tenant with an instance and staff (a tenant whose campaigns are gone
    can be deleted: a campaign protects its contact list)."""
    tenant = Tenant.objects.create(slug=slug, name=f"{slug} Ltd")
    Instance.objects.create(tenant=tenant, name=f"{slug}-sales", gateway=Gateway.objects.get(name="gw-main"))
    users = [_staff(username) for username in usernames]
    for user in users:
        TenantMembership.objects.create(user=user, tenant=tenant)
    return tenant, users


def test_deleting_a_tenant_deactivates_its_staff_who_then_cannot_log_in(world: World) -> None:
    tenant, (carol, dave) = _tenant_with_staff("gone", "carol", "dave")
    session = login(carol)
    tenant.delete()
    assert not User.objects.filter(pk__in=[carol.pk, dave.pk], is_active=True).exists()
    assert User.objects.filter(username__in=["alice", "bob", "olga"], is_active=True).count() == 3
    assert not Client().login(username="carol", password=PASSWORD)
    # The session she had open is no longer hers: back to the login page.
    response = session.get(_changelist(Instance))
    assert response.status_code == 302 and "/login/" in response["Location"]
    # And were she reactivated, with no membership she would see nothing.
    User.objects.filter(pk=carol.pk).update(is_active=True)
    assert login(User.objects.get(pk=carol.pk)).get(_changelist(Instance)).status_code == 403


def test_deleting_tenants_in_the_admin_deactivates_their_staff(world: World) -> None:
    first, (carol,) = _tenant_with_staff("first", "carol")
    second, (dave,) = _tenant_with_staff("second", "dave")
    client = login(User.objects.create_superuser("root", password=PASSWORD))
    url = reverse("admin:instances_tenant_changelist")
    response = client.post(url, {"action": "delete_selected", "_selected_action": [first.pk], "post": "yes"})
    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=first.pk).exists()
    assert not User.objects.get(pk=carol.pk).is_active
    assert User.objects.get(pk=dave.pk).is_active

    response = client.post(reverse("admin:instances_tenant_delete", args=[second.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=second.pk).exists()
    assert not User.objects.get(pk=dave.pk).is_active


@pytest.mark.django_db(transaction=True)
def test_a_tenant_deletion_that_fails_leaves_its_staff_active() -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme Corp")
    user = _staff("alice")
    TenantMembership.objects.create(user=user, tenant=tenant)

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("the deletion fails after the staff were deactivated")

    post_delete.connect(refuse, sender=Tenant, dispatch_uid="test-refuse")
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            tenant.delete()
    finally:
        post_delete.disconnect(sender=Tenant, dispatch_uid="test-refuse")
    user.refresh_from_db()
    assert user.is_active
    assert Tenant.objects.filter(pk=tenant.pk).exists()
