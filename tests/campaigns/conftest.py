"""Fixtures of the campaigns tests: the API's cast of two tenants, a worker
channel and Redis prefix of the test's own (hints sent by the code under test
land there, where a test can read them), a real webhook receiver on
127.0.0.1, and builders for contact lists, campaigns and messages.

Nothing here is autouse: the engine tests in this folder bring their own
platform. API test modules route with ``pytest.mark.urls(URLS)``: the
project's own routes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from campaigns.models import Campaign, Contact, ContactList, Message, TenantWebhook
from instances.models import Instance, Status, Tenant
from tests.fixtures.cast import Cast, build_cast
from tests.fixtures.webhooks import Receiver, receiver  # noqa: F401  (a fixture of these tests)

URLS = "blast.urls"


@pytest.fixture
def cast(db: Any) -> Cast:
    """Tenant A (acme: owner key, revoked key, instances sales and support),
    tenant B (rival: its own key and instance)."""
    return build_cast()


@pytest.fixture
def hints_channel(settings: Any) -> Iterator[str]:
    """A worker channel and Redis prefix of this test's own; yields the channel."""
    tag = uuid.uuid4().hex[:8]
    settings.BLAST_WORKER_CHANNEL = f"blast-test-camp-{tag}"
    settings.BLAST_REDIS_PREFIX = f"blast-test-camp-{tag}"
    yield settings.BLAST_WORKER_CHANNEL
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def received_hints(channel: str, timeout: float = 1.0) -> list[int]:
    """Every instance id hinted on ``channel`` so far (drains the channel)."""
    layer = get_channel_layer()
    assert layer is not None
    ids: list[int] = []

    async def drain() -> None:
        import asyncio

        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=timeout)
            except TimeoutError:
                return
            ids.extend(message.get("ids", []))

    async_to_sync(drain)()
    return ids


@pytest.fixture
def private_webhooks(settings: Any) -> None:
    """Webhook targets on 127.0.0.1 allowed (the receiver above)."""
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = True


# -- builders -------------------------------------------------------------------------------


def make_list(tenant: Tenant, rows: Sequence[tuple[str, dict[str, str]]], name: str = "customers") -> ContactList:
    """A contact list holding ``rows`` of (E.164 number, custom fields)."""
    fields: list[str] = []
    for _, values in rows:
        fields += [f for f in values if f not in fields]
    contact_list = ContactList.objects.create(tenant=tenant, name=name, fields=fields)
    Contact.objects.bulk_create([Contact(contact_list=contact_list, phone=p, fields=f) for p, f in rows])
    return contact_list


def numbers(count: int, start: int = 0) -> list[str]:
    """``count`` distinct E.164 numbers that phonenumbers holds valid
    (+1 201 555 xxxx; the fictional 555-01xx numbers are not valid)."""
    return [f"+1201555{n:04d}" for n in range(start, start + count)]


def make_campaign(
    tenant: Tenant,
    contact_list: ContactList,
    instances: Sequence[Instance],
    template: str = "Hello {{name}}",
    **fields: Any,
) -> Campaign:
    campaign = Campaign.objects.create(
        tenant=tenant, name=fields.pop("name", "spring"), template=template, contact_list=contact_list, **fields
    )
    campaign.instances.set(instances)
    return campaign


def start_through_api(
    tenant: Tenant, contact_list: ContactList, instances: Sequence[Instance], **fields: Any
) -> Campaign:
    """Create a campaign ("{Hi|Hello} {{name}}" to ``contact_list`` over
    ``instances``, plus ``fields``) and start it, as a tenant would: through
    the API with an API key of ``tenant``."""
    from rest_framework.test import APIClient

    from api.models import ApiKey

    _, key = ApiKey.objects.create_key(tenant, "campaigns")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = {
        "name": "blast",
        "template": "{Hi|Hello} {{name}}",
        "contact_list": str(contact_list.key),
        "instances": [str(i.key) for i in instances],
        **fields,
    }
    created = client.post("/api/v1/campaigns", body, format="json")
    assert created.status_code == 201, created.content
    campaign = Campaign.objects.get(key=created.json()["id"])
    started = client.post(f"/api/v1/campaigns/{campaign.key}/start")
    assert started.status_code == 200, started.content
    return campaign


def connect(*instances: Instance) -> None:
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(status=Status.CONNECTED)


def make_webhook(tenant: Tenant, url: str, secret: str = "s3cret", **fields: Any) -> TenantWebhook:
    webhook = TenantWebhook(tenant=tenant, name=fields.pop("name", "status"), url=url, **fields)
    webhook.set_secret(secret)
    webhook.save()
    return webhook


def statuses(campaign: Campaign) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Message.objects.filter(campaign=campaign).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Records the Celery dispatches instead of queuing them (tests call the
    tasks themselves): {"expansions": [campaign ids], "deliveries": [ids]}."""
    from campaigns import dispatch, tasks

    calls: dict[str, list[int]] = {"expansions": [], "deliveries": []}
    monkeypatch.setattr(dispatch, "dispatch_expansion", lambda campaign_id: calls["expansions"].append(campaign_id))
    monkeypatch.setattr(
        tasks,
        "dispatch_deliveries",
        lambda ids, countdown=None: calls["deliveries"].extend(ids),
    )
    return calls
