"""Tenant isolation and authentication on every endpoint of the campaigns
API: another tenant's key gets a 404 for each of tenant A's objects and
changes nothing; no key, a wrong key or a revoked key gets a 401."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    Message,
    OptOut,
    TenantWebhook,
    WebhookDelivery,
)
from tests.campaigns.conftest import URLS, make_campaign, make_list, make_webhook
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

PHONE = "+5511999990001"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {instance} {message} {list} {contact} {campaign} {webhook}
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


OBJECT_ENDPOINTS = [
    Endpoint("post", "/api/v1/instances/{instance}/messages", {"to": PHONE, "text": "hi"}),
    Endpoint("get", "/api/v1/messages/{message}"),
    Endpoint("get", "/api/v1/contact-lists/{list}"),
    Endpoint("patch", "/api/v1/contact-lists/{list}", {"name": "stolen"}),
    Endpoint("delete", "/api/v1/contact-lists/{list}"),
    Endpoint("post", "/api/v1/contact-lists/{list}/upload", "csv"),
    Endpoint("get", "/api/v1/contact-lists/{list}/contacts"),
    Endpoint("post", "/api/v1/contact-lists/{list}/contacts", {"phone": "+5511999990009"}),
    Endpoint("get", "/api/v1/contact-lists/{list}/contacts/{contact}"),
    Endpoint("delete", "/api/v1/contact-lists/{list}/contacts/{contact}"),
    Endpoint("get", "/api/v1/campaigns/{campaign}"),
    Endpoint("patch", "/api/v1/campaigns/{campaign}", {"name": "stolen"}),
    Endpoint("delete", "/api/v1/campaigns/{campaign}"),
    Endpoint("post", "/api/v1/campaigns/{campaign}/start"),
    Endpoint("post", "/api/v1/campaigns/{campaign}/pause"),
    Endpoint("post", "/api/v1/campaigns/{campaign}/resume"),
    Endpoint("post", "/api/v1/campaigns/{campaign}/cancel"),
    Endpoint("get", "/api/v1/campaigns/{campaign}/report"),
    Endpoint("get", "/api/v1/campaigns/{campaign}/report.csv"),
    Endpoint("get", "/api/v1/webhooks/{webhook}"),
    Endpoint("patch", "/api/v1/webhooks/{webhook}", {"name": "stolen"}),
    Endpoint("delete", "/api/v1/webhooks/{webhook}"),
    Endpoint("post", "/api/v1/webhooks/{webhook}/rotate-secret"),
    Endpoint("get", "/api/v1/webhooks/{webhook}/deliveries"),
    Endpoint("delete", "/api/v1/opt-outs/{phone}"),
]
COLLECTION_ENDPOINTS = [
    Endpoint("get", "/api/v1/messages"),
    Endpoint("get", "/api/v1/quota"),
    Endpoint("get", "/api/v1/contact-lists"),
    Endpoint("post", "/api/v1/contact-lists", {"name": "x"}),
    Endpoint("get", "/api/v1/campaigns"),
    Endpoint("post", "/api/v1/campaigns", {"name": "x"}),
    Endpoint("get", "/api/v1/opt-outs"),
    Endpoint("post", "/api/v1/opt-outs", {"phone": PHONE}),
    Endpoint("get", "/api/v1/webhooks"),
    Endpoint("post", "/api/v1/webhooks", {"name": "x", "url": "https://hooks.example.com/x"}),
]


@pytest.fixture
def tenant_a_objects(cast: Cast) -> dict[str, str]:
    contact_list = make_list(cast.tenant_a, [(PHONE, {"name": "Ana"})])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="Hi {{name}}")
    message = Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, campaign=campaign, to=PHONE, text="secret text"
    )
    webhook = make_webhook(cast.tenant_a, "https://hooks.example.com/a")
    WebhookDelivery.objects.create(webhook=webhook, payload={"events": []})
    OptOut.objects.create(tenant=cast.tenant_a, phone="+5511999990002")
    return {
        "instance": str(cast.instance_a.key),
        "message": str(message.key),
        "list": str(contact_list.key),
        "contact": str(Contact.objects.get().key),
        "campaign": str(campaign.key),
        "webhook": str(webhook.key),
        "phone": "+5511999990002",
    }


def snapshot() -> dict[str, Any]:
    return {
        "messages": list(Message.objects.values()),
        "lists": list(ContactList.objects.values()),
        "contacts": list(Contact.objects.values()),
        "campaigns": list(Campaign.objects.values()),
        "webhooks": list(TenantWebhook.objects.values()),
        "opt_outs": list(OptOut.objects.values()),
    }


def call(client: Any, endpoint: Endpoint, ids: dict[str, str]) -> Any:
    path = endpoint.path.format(**ids)
    if endpoint.body == "csv":
        return client.generic("POST", path, b"phone\n+5511999990003\n", content_type="text/csv")
    return getattr(client, endpoint.method)(path, endpoint.body, format="json")


@pytest.mark.parametrize("endpoint", OBJECT_ENDPOINTS, ids=str)
def test_another_tenants_key_gets_404_and_changes_nothing(
    cast: Cast, tenant_a_objects: dict[str, str], endpoint: Endpoint
) -> None:
    before = snapshot()
    response = call(cast.outsider, endpoint, tenant_a_objects)
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"
    assert b"secret text" not in response.content and b"Ana" not in response.content
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", OBJECT_ENDPOINTS, ids=str)
def test_the_owner_reaches_the_same_endpoint(
    cast: Cast, tenant_a_objects: dict[str, str], endpoint: Endpoint, dispatched: Any
) -> None:
    """The control for the test above: the 404 is the tenant boundary, not a broken route."""
    response = call(cast.owner, endpoint, tenant_a_objects)
    assert response.status_code not in (401, 403, 404), (response.status_code, response.content)


def test_the_outsiders_lists_hold_nothing_of_tenant_a(cast: Cast, tenant_a_objects: dict[str, str]) -> None:
    for path in (
        "/api/v1/messages",
        "/api/v1/contact-lists",
        "/api/v1/campaigns",
        "/api/v1/opt-outs",
        "/api/v1/webhooks",
    ):
        assert cast.outsider.get(path).json()["results"] == [], path
        assert cast.owner.get(path).json()["results"] != [], path
    # Filtering by tenant A's objects shows nothing either.
    query = f"?instance={tenant_a_objects['instance']}&campaign={tenant_a_objects['campaign']}"
    assert cast.outsider.get(f"/api/v1/messages{query}").json()["results"] == []


@pytest.mark.parametrize("endpoint", OBJECT_ENDPOINTS + COLLECTION_ENDPOINTS, ids=str)
@pytest.mark.parametrize("credentials", ["none", "unknown", "revoked"])
def test_without_a_live_key_every_endpoint_is_401(
    cast: Cast, tenant_a_objects: dict[str, str], endpoint: Endpoint, credentials: str
) -> None:
    key = {
        "none": None,
        "unknown": "blast_0123456789ab_not-a-real-secret-at-all-xxxxxxxx",
        "revoked": cast.revoked_key_a,
    }
    before = snapshot()
    response = call(cast.client(key[credentials]), endpoint, tenant_a_objects)
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert snapshot() == before
