"""The admin: CSV upload into a contact list with its row errors, campaign
actions through the lifecycle, webhook secrets shown once, tenant staff
confined to their tenant."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign, Contact, ContactList, TenantWebhook
from instances.models import TenantMembership
from tests.campaigns.conftest import make_campaign, make_list, numbers
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

STAFF_PERMISSIONS = [
    f"{action}_{model}"
    for model in ("contactlist", "contact", "campaign", "message", "optout", "tenantwebhook", "webhookdelivery")
    for action in ("view", "add", "change", "delete")
] + ["view_instance", "view_tenant"]


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def root(db: Any) -> Client:
    return login(User.objects.create_superuser("root", password="x"))


@pytest.fixture
def alice(cast: Cast) -> Client:
    """Staff of tenant A (acme)."""
    user = User.objects.create_user("alice", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    TenantMembership.objects.create(user=user, tenant=cast.tenant_a)
    return login(user)


def upload(client: Client, contact_list: ContactList, content: bytes, region: str = "") -> Any:
    url = reverse("admin:campaigns_contactlist_upload", args=[contact_list.pk])
    return client.post(url, {"file": SimpleUploadedFile("c.csv", content, "text/csv"), "region": region})


def test_a_csv_uploaded_in_the_admin_is_imported_with_its_row_errors_shown(cast: Cast, root: Client) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="vip")
    change = root.get(reverse("admin:campaigns_contactlist_change", args=[contact_list.pk]))
    assert b"Upload CSV" in change.content
    response = upload(root, contact_list, b"phone,name\n(11) 99999-0001,Ana\nnope,Bo\n(11) 99999-0001,\n", region="BR")
    assert response.status_code == 200
    page = response.content.decode()
    assert "3 rows read: 1 contacts added, 0 updated, 1 duplicates merged, 1 rows refused." in page
    assert "<tr><td>3</td><td>&#x27;nope&#x27; is not a phone number" in page
    assert list(Contact.objects.values_list("phone", "fields")) == [("+5511999990001", {"name": "Ana"})]


def test_an_unusable_file_is_refused_on_the_form(cast: Cast, root: Client) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="vip")
    response = upload(root, contact_list, b"name\nAna\n")
    assert response.status_code == 200
    assert "no &#x27;phone&#x27; column" in response.content.decode()
    assert not Contact.objects.exists()


def test_campaign_actions_run_the_lifecycle_and_report_refusals(cast: Cast, root: Client, dispatched: Any) -> None:
    contact_list = make_list(cast.tenant_a, [(n, {}) for n in numbers(2)])
    ready = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="Hi", name="ready")
    empty = make_campaign(cast.tenant_a, make_list(cast.tenant_a, [], name="none"), [cast.instance_a], name="empty")
    url = reverse("admin:campaigns_campaign_changelist")
    response = root.post(url, {"action": "start", "_selected_action": [ready.pk, empty.pk]}, follow=True)
    page = response.content.decode()
    assert "Started 1 campaign." in page
    assert "its contact list is empty" in page
    assert Campaign.objects.get(pk=ready.pk).status == "running"
    root.post(url, {"action": "pause", "_selected_action": [ready.pk]})
    assert Campaign.objects.get(pk=ready.pk).status == "paused"
    root.post(url, {"action": "resume", "_selected_action": [ready.pk]})
    root.post(url, {"action": "cancel", "_selected_action": [ready.pk]})
    campaign = Campaign.objects.get(pk=ready.pk)
    assert campaign.status == "cancelled" and campaign.status_message == "Cancelled by user:root."


def test_a_campaign_form_refuses_unknown_template_fields(cast: Cast, root: Client) -> None:
    contact_list = make_list(cast.tenant_a, [(numbers(1)[0], {"name": "Ana"})])
    response = root.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "tenant": cast.tenant_a.pk,
            "name": "x",
            "template": "Hi {{nmae}}",
            "contact_list": contact_list.pk,
            "instances": [cast.instance_a.pk],
            "rotation": "round_robin",
            "time_zone": "UTC",
            "allowed_weekdays": "[]",
            "send_delay_min_s": "20",
            "send_delay_max_s": "45",
        },
    )
    assert response.status_code == 200
    assert "Unknown template field {{nmae}}" in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_webhook_created_in_the_admin_shows_its_secret_once(cast: Cast, root: Client) -> None:
    response = root.post(
        reverse("admin:campaigns_tenantwebhook_add"),
        {
            "tenant": cast.tenant_a.pk,
            "name": "crm",
            "url": "https://hooks.example.com/x",
            "message_events": "on",
            "enabled": "on",
        },
    )
    assert response.status_code == 200, response.content[:2000]
    webhook = TenantWebhook.objects.get()
    assert webhook.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # On the page only: messages travel in a signed, readable cookie.
    assert webhook.secret not in str(response.cookies)
    assert all(webhook.secret not in str(m) for m in get_messages(response.wsgi_request))
    change = root.get(reverse("admin:campaigns_tenantwebhook_change", args=[webhook.pk]))
    assert webhook.secret not in change.content.decode()


def test_tenant_staff_see_and_upload_into_their_tenants_lists_only(cast: Cast, alice: Client) -> None:
    mine = ContactList.objects.create(tenant=cast.tenant_a, name="mine")
    theirs = ContactList.objects.create(tenant=cast.tenant_b, name="theirs")
    page = alice.get(reverse("admin:campaigns_contactlist_changelist")).content.decode()
    assert "mine" in page and "theirs" not in page
    assert upload(alice, theirs, b"phone\n+5511999990001\n").status_code == 404
    assert upload(alice, mine, b"phone\n+5511999990001\n").status_code == 200
    assert list(Contact.objects.values_list("contact_list_id", flat=True)) == [mine.pk]


def test_the_list_filters_of_tenant_staff_name_only_their_tenants_lists(cast: Cast, alice: Client) -> None:
    for tenant, names in ((cast.tenant_a, ["acme-vip", "acme-all"]), (cast.tenant_b, ["rival-vip"])):
        for n, name in enumerate(names):
            make_list(tenant, [(numbers(1, start=n)[0], {})], name=name)
    html = alice.get(reverse("admin:campaigns_contact_changelist")).content.decode()
    sidebar = html[html.index('id="changelist-filter"') :]
    assert "acme-vip" in sidebar and "acme-all" in sidebar
    assert "rival-vip" not in html
    for model in ("contactlist", "campaign", "message", "optout", "tenantwebhook", "webhookdelivery"):
        page = alice.get(reverse(f"admin:campaigns_{model}_changelist")).content.decode()
        assert "Rival" not in page, model  # no tenant filter naming the other tenant


def test_tenant_staff_choose_only_their_own_instances_and_lists(cast: Cast, alice: Client) -> None:
    make_list(cast.tenant_b, [], name="rival list")
    page = alice.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert "rival list" not in page
    assert f'value="{cast.instance_b.pk}"' not in page
    assert f'value="{cast.instance_a.pk}"' in page


MODELS = [
    "contactlist",
    "contact",
    "campaign",
    "message",
    "messageevent",
    "inboundmessage",
    "optout",
    "tenantquota",
    "tenantwebhook",
    "webhookdelivery",
]


@pytest.mark.parametrize("model", MODELS)
def test_every_admin_page_answers_for_operators_and_tenant_staff(
    cast: Cast, root: Client, alice: Client, model: str
) -> None:
    from campaigns.inbound import handle_inbound
    from campaigns.models import Message, TenantQuota, WebhookDelivery

    contact_list = make_list(cast.tenant_a, [(numbers(1)[0], {"name": "Ana"})])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="Hi")
    Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, campaign=campaign, to=numbers(1)[0], text="x"
    )
    handle_inbound(cast.instance_a.pk, "srv-1", numbers(1)[0], "STOP")
    TenantQuota.objects.create(tenant=cast.tenant_a, monthly_messages=100)
    webhook = TenantWebhook(tenant=cast.tenant_a, name="crm", url="https://hooks.example.com/x")
    webhook.save()
    WebhookDelivery.objects.create(webhook=webhook, payload={"events": []})
    for client in (root, alice):
        listing = client.get(reverse(f"admin:campaigns_{model}_changelist"))
        assert listing.status_code in (200, 403), (model, listing.status_code)
        if listing.status_code == 403:
            continue
        model_class = listing.context["cl"].model
        first = model_class.objects.first()
        if first is not None:
            page = client.get(reverse(f"admin:campaigns_{model}_change", args=[first.pk]))
            assert page.status_code == 200, (model, page.status_code)


def test_auto_reply_rules_are_managed_in_the_admin_with_the_apis_checks(cast: Cast, root: Client) -> None:
    from campaigns.models import AutoReplyRule

    url = reverse("admin:campaigns_autoreplyrule_add")
    base = {
        "tenant": cast.tenant_a.pk,
        "instance": cast.instance_a.pk,
        "name": "Hours",
        "match": "regex",
        "reply_text": "9 to 18",
        "cooldown_s": 3600,
        "priority": 100,
        "enabled": "on",
    }
    refused = root.post(url, {**base, "pattern": "(unclosed"})
    assert refused.status_code == 200 and "Not a valid regular expression" in refused.content.decode()
    rivals = root.post(url, {**base, "pattern": "hours", "instance": cast.instance_b.pk})
    assert "This belongs to another tenant." in rivals.content.decode()
    assert root.post(url, {**base, "pattern": "hours", "cooldown_s": 5}).status_code == 200  # too short
    assert not AutoReplyRule.objects.exists()
    created = root.post(url, {**base, "pattern": r"\bhours\b"})
    assert created.status_code == 302, created.content.decode()[-1500:]
    rule = AutoReplyRule.objects.get()
    assert (rule.instance_id, rule.pattern, rule.cooldown_s) == (cast.instance_a.pk, r"\bhours\b", 3600)
    listing = root.get(reverse("admin:campaigns_autoreplyrule_changelist")).content.decode()
    assert "Hours" in listing and "messages answered" in listing.lower()
