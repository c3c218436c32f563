"""Status webhooks against a real HTTP receiver on 127.0.0.1: fan-out of
message and instance events (once, batched, scoped), HMAC-SHA256 signatures,
retries with exponential backoff, every attempt recorded; the API; the
address policy at save and at delivery, against DNS rebinding too."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError

from campaigns import tasks, webhooks
from campaigns.models import DeliveryStatus, FeedCursor, Message, MessageEvent, TenantWebhook, WebhookDelivery
from instances import tokens
from instances.models import ConnectionEvent, EventKind
from monitoring import delivery, outbound
from tests.campaigns.conftest import URLS, make_webhook
from tests.fixtures.cast import Cast
from tests.fixtures.dns import FakeDNS
from tests.fixtures.webhooks import Receiver
from tests.fixtures.webhooks import verify as verify_signature

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_webhooks")]

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def message_event(
    cast: Cast, status: str = "sent", instance: Any = None, tenant: Any = None, **data: Any
) -> MessageEvent:
    instance = instance or cast.instance_a
    tenant = tenant or cast.tenant_a
    message = Message.objects.create(tenant=tenant, instance=instance, to="+5511999990001", text="hi")
    return MessageEvent.objects.create(
        message=message, tenant=tenant, instance=instance, status=status, data=data, at=dt.datetime.now(dt.UTC)
    )


def deliver_all(now: dt.datetime | None = None) -> list[delivery.Outcome | None]:
    return [webhooks.attempt(pk, now) for pk in webhooks.fan_out(now)]


def test_events_after_a_webhook_exists_are_posted_signed_in_one_batch(cast: Cast, receiver: Receiver) -> None:
    early = message_event(cast, "sent")
    webhook = make_webhook(cast.tenant_a, receiver.url, secret="topsecret")
    sent = message_event(cast, "sent", server_id="srv-1")
    failed = message_event(cast, "failed", reason="nack_permanent", error="blocked")
    connected = ConnectionEvent.objects.create(instance=cast.instance_a, kind=EventKind.READY, message="ready")

    outcomes = deliver_all()
    assert [o.status for o in outcomes if o] == ["delivered", "delivered"]  # one per feed
    requests = receiver.requests()
    assert len(requests) == 2
    message_post = next(r for r in requests if "me_" in r.body.decode())
    body = message_post.json()
    assert [e["id"] for e in body["events"]] == [f"me_{sent.pk}", f"me_{failed.pk}"]
    assert f"me_{early.pk}" not in message_post.body.decode()
    first, second = body["events"]
    assert first["type"] == "message.status" and first["message"]["status"] == "sent"
    assert first["message"]["id"] == str(sent.message.key) and first["instance"]["id"] == str(cast.instance_a.key)
    assert (second["message"]["failure_reason"], second["message"]["error"]) == ("nack_permanent", "blocked")
    assert body["webhook"] == str(webhook.key)
    instance_post = next(r for r in requests if r is not message_post).json()
    assert instance_post["events"] == [
        {
            "id": f"ce_{connected.pk}",
            "type": "instance.event",
            "at": instance_post["events"][0]["at"],
            "instance": {"id": str(cast.instance_a.key), "name": "sales"},
            "event": {"kind": "ready", "reason": "", "message": "ready"},
        }
    ]
    # The signature verifies with the secret, over the exact body and timestamp.
    headers = {k.lower(): v for k, v in message_post.headers.items()}
    assert headers["user-agent"] == "Blast-Webhooks/1"
    assert headers["x-blast-delivery"] == body["delivery"]
    assert verify_signature(
        "topsecret",
        headers["x-blast-timestamp"],
        headers["x-blast-signature"],
        message_post.body,
        now=float(headers["x-blast-timestamp"]),
    )
    assert not verify_signature(
        "wrong",
        headers["x-blast-timestamp"],
        headers["x-blast-signature"],
        message_post.body,
        now=float(headers["x-blast-timestamp"]),
    )


def test_each_event_goes_into_a_delivery_once(cast: Cast, receiver: Receiver) -> None:
    make_webhook(cast.tenant_a, receiver.url)
    message_event(cast)
    assert len(webhooks.fan_out()) == 1
    assert webhooks.fan_out() == []
    message_event(cast)
    assert len(webhooks.fan_out()) == 1
    assert WebhookDelivery.objects.count() == 2


def test_an_event_committed_late_behind_a_newer_id_is_not_skipped(cast: Cast, receiver: Receiver) -> None:
    make_webhook(cast.tenant_a, receiver.url)
    first = message_event(cast)
    later = message_event(cast)
    # An id taken by a transaction that commits only after the fan-out read past it.
    MessageEvent.objects.filter(pk=later.pk).update(id=later.pk + 1)
    webhooks.fan_out()
    MessageEvent.objects.create(
        id=later.pk, message=first.message, tenant=cast.tenant_a, instance=cast.instance_a, status="delivered"
    )
    [delivery_id] = webhooks.fan_out()
    events = WebhookDelivery.objects.get(pk=delivery_id).payload["events"]
    assert [e["id"] for e in events] == [f"me_{later.pk}"]


def test_webhooks_get_only_their_tenants_or_their_instances_events(cast: Cast, receiver: Receiver) -> None:
    tenant_wide = make_webhook(cast.tenant_a, receiver.url, name="all")
    one_instance = make_webhook(cast.tenant_a, receiver.url, name="support only", instance=cast.instance_a2)
    messages_only = make_webhook(cast.tenant_a, receiver.url, name="messages", instance_events=False)
    theirs = make_webhook(cast.tenant_b, receiver.url, name="rival")
    make_webhook(cast.tenant_a, receiver.url, name="off", enabled=False)
    message_event(cast, instance=cast.instance_a)
    message_event(cast, instance=cast.instance_a2)
    ConnectionEvent.objects.create(instance=cast.instance_a2, kind=EventKind.DISCONNECT, reason="timed_out")

    webhooks.fan_out()
    events = {
        w.name: sorted(
            e["id"][:3] + e.get("instance", {}).get("name", "") for d in w.deliveries.all() for e in d.payload["events"]
        )
        for w in TenantWebhook.objects.all()
    }
    assert events == {
        tenant_wide.name: ["ce_support", "me_sales", "me_support"],
        one_instance.name: ["ce_support", "me_support"],
        messages_only.name: ["me_sales", "me_support"],
        theirs.name: [],
        "off": [],
    }


def test_many_events_are_split_into_batches(cast: Cast, receiver: Receiver, settings: Any) -> None:
    settings.BLAST_WEBHOOK_BATCH = 3
    make_webhook(cast.tenant_a, receiver.url)
    for _ in range(7):
        message_event(cast)
    deliveries = [WebhookDelivery.objects.get(pk=pk) for pk in webhooks.fan_out()]
    assert [d.event_count for d in deliveries] == [3, 3, 1]


def test_a_failing_receiver_is_retried_with_exponential_backoff_and_every_attempt_recorded(
    cast: Cast, receiver: Receiver, settings: Any
) -> None:
    settings.BLAST_WEBHOOK_RETRY_BASE_S = 10
    make_webhook(cast.tenant_a, receiver.url)
    message_event(cast)
    receiver.fail_next(2, status=503)
    with time_machine.travel(T0, tick=False):
        [delivery_id] = webhooks.fan_out()
        first = webhooks.attempt(delivery_id)
    assert first == delivery.Outcome("pending", 1, 10.0)
    record = WebhookDelivery.objects.get(pk=delivery_id)
    assert (record.last_status_code, record.response_excerpt, record.error) == (503, "receiver is down", "HTTP 503")
    assert record.next_attempt_at == T0 + dt.timedelta(seconds=10)
    with time_machine.travel(T0 + dt.timedelta(seconds=9), tick=False):
        assert webhooks.attempt(delivery_id) is None  # not due yet
    with time_machine.travel(T0 + dt.timedelta(seconds=10), tick=False):
        assert webhooks.attempt(delivery_id) == delivery.Outcome("pending", 2, 20.0)
    with time_machine.travel(T0 + dt.timedelta(seconds=30), tick=False):
        assert webhooks.attempt(delivery_id) == delivery.Outcome("delivered", 3, None)
    record.refresh_from_db()
    assert (record.status, record.attempts, record.last_status_code, record.error) == ("delivered", 3, 200, "")
    bodies = [r.body for r in receiver.requests()]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same events every time


def test_delivery_gives_up_after_the_last_attempt(cast: Cast, receiver: Receiver, settings: Any) -> None:
    settings.BLAST_WEBHOOK_MAX_ATTEMPTS = 2
    make_webhook(cast.tenant_a, receiver.url)
    message_event(cast)
    receiver.fail_next(5, status=500)
    with time_machine.travel(T0, tick=False):
        [delivery_id] = webhooks.fan_out()
        webhooks.attempt(delivery_id)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        assert webhooks.attempt(delivery_id) == delivery.Outcome("failed", 2, None)
        assert webhooks.attempt(delivery_id) is None
    assert len(receiver.requests()) == 2


def test_an_unreachable_receiver_is_recorded_as_an_error(cast: Cast) -> None:
    make_webhook(cast.tenant_a, "http://127.0.0.1:9/hook")
    message_event(cast)
    [delivery_id] = webhooks.fan_out()
    assert webhooks.attempt(delivery_id).status == "pending"  # type: ignore[union-attr]
    record = WebhookDelivery.objects.get(pk=delivery_id)
    # The tenant reads a fixed summary, not the network's own words.
    assert (record.last_status_code, record.error, record.response_excerpt) == (None, "connection failed", "")


def test_the_tasks_dispatch_new_deliveries_and_retries(
    cast: Cast, receiver: Receiver, dispatched: dict[str, list[int]]
) -> None:
    make_webhook(cast.tenant_a, receiver.url)
    message_event(cast)
    assert tasks.fan_out_webhooks() == 1
    [delivery_id] = dispatched["deliveries"]
    assert tasks.deliver_webhook(delivery_id) == "delivered"
    assert tasks.deliver_webhook(delivery_id) is None  # a repeated task does nothing


def test_overdue_deliveries_are_swept(cast: Cast, receiver: Receiver) -> None:
    make_webhook(cast.tenant_a, receiver.url)
    message_event(cast)
    with time_machine.travel(T0, tick=False):
        [delivery_id] = webhooks.fan_out()
    assert webhooks.overdue(T0 + dt.timedelta(seconds=10), slack_s=30) == []
    assert webhooks.overdue(T0 + dt.timedelta(seconds=31), slack_s=30) == [delivery_id]


def test_with_no_webhook_the_cursor_skips_to_the_end(cast: Cast, receiver: Receiver) -> None:
    event = message_event(cast)
    assert webhooks.fan_out() == []
    assert FeedCursor.objects.get(key=webhooks.MESSAGE_FEED).data["last_id"] == event.pk


def test_private_targets_are_refused_unless_allowed(cast: Cast, settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/x", "http://[::1]/x"):
        assert "public address" in webhooks.url_problem(url)
    assert webhooks.url_problem("https://hooks.example.com/blast") == ""
    webhook = TenantWebhook(tenant=cast.tenant_a, name="sneaky", url="http://127.0.0.1:9/hook")
    webhook.save()
    message_event(cast)
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = True
    [delivery_id] = webhooks.fan_out()
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    webhooks.attempt(delivery_id)
    assert WebhookDelivery.objects.get(pk=delivery_id).error == "refused by address policy"


def test_secrets_are_encrypted_at_rest(cast: Cast) -> None:
    webhook = make_webhook(cast.tenant_a, "https://hooks.example.com/x", secret="plain-secret")
    stored = TenantWebhook.objects.values_list("secret_encrypted", flat=True).get(pk=webhook.pk)
    assert "plain-secret" not in stored
    assert tokens.decrypt(stored) == "plain-secret"


@pytest.mark.urls(URLS)
def test_the_api_creates_webhooks_shows_the_secret_once_and_lists_deliveries(cast: Cast, receiver: Receiver) -> None:
    created = cast.owner.post(
        "/api/v1/webhooks",
        {"name": "crm", "url": receiver.url, "instance": str(cast.instance_a.key), "instance_events": False},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert len(body["secret"]) > 30 and body["instance"] == str(cast.instance_a.key)
    webhook_url = f"/api/v1/webhooks/{body['id']}"
    assert "secret" not in cast.owner.get(webhook_url).json()
    assert "secret" not in json.dumps(cast.owner.get("/api/v1/webhooks").json())
    assert TenantWebhook.objects.get().secret == body["secret"]

    message_event(cast)
    deliver_all()
    [row] = cast.owner.get(f"{webhook_url}/deliveries").json()["results"]
    assert (row["status"], row["event_count"], row["attempts"], row["last_status_code"]) == (
        DeliveryStatus.DELIVERED,
        1,
        1,
        200,
    )
    rotated = cast.owner.post(f"{webhook_url}/rotate-secret").json()["secret"]
    assert rotated != body["secret"] and TenantWebhook.objects.get().secret == rotated
    assert cast.owner.patch(webhook_url, {"enabled": False}, format="json").json()["enabled"] is False
    assert cast.owner.delete(webhook_url).status_code == 204


@pytest.mark.urls(URLS)
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "x", "url": "ftp://example.com/x"}, "url", "Enter an http:// or https:// URL."),
        ({"name": "x", "url": "not a url"}, "url", "Enter an http:// or https:// URL."),
        (
            {"name": "x", "url": "https://example.com", "instance": "7d3c1a9e-0000-4000-8000-000000000000"},
            "instance",
            "No instance with id",
        ),
        ({"name": "x", "url": "https://example.com", "secret": "mine"}, "secret", "Unknown field."),
    ],
)
def test_bad_webhooks_are_refused(cast: Cast, body: dict[str, Any], field: str, message: str) -> None:
    response = cast.owner.post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 400
    assert message in str(response.json()[field])


@pytest.mark.urls(URLS)
def test_the_api_refuses_a_private_url_when_private_targets_are_off(cast: Cast, settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    response = cast.owner.post("/api/v1/webhooks", {"name": "x", "url": "http://127.0.0.1:8000/hook"}, format="json")
    assert response.status_code == 400
    assert response.json()["url"] == ["A webhook URL must point to a public address, not a private or loopback one."]


@pytest.mark.urls(URLS)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:secret@hooks.example.com/x", outbound.USERINFO),
        ("http://169.254.169.254/latest/meta-data/", outbound.NOT_PUBLIC),
        ("http://[::ffff:127.0.0.1]/x", outbound.NOT_PUBLIC),
        ("http://[64:ff9b::a00:1]/x", outbound.NOT_PUBLIC),
        ("http://[2002:7f00:1::1]/x", outbound.NOT_PUBLIC),
        ("http://100.64.0.1/x", outbound.NOT_PUBLIC),
    ],
)
def test_the_api_refuses_urls_outside_the_address_policy(cast: Cast, settings: Any, url: str, message: str) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    response = cast.owner.post("/api/v1/webhooks", {"name": "x", "url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["url"] == [message]
    assert not TenantWebhook.objects.exists()


def test_model_validation_refuses_private_urls(cast: Cast, settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/x", "http://user:pw@hooks.example.com/x"):
        with pytest.raises(ValidationError) as raised:
            TenantWebhook(tenant=cast.tenant_a, name="x", url=url).full_clean()
        assert "url" in raised.value.message_dict
    TenantWebhook(tenant=cast.tenant_a, name="x", url="https://hooks.example.com/x").full_clean()


def test_a_name_that_rebinds_to_loopback_never_reaches_it(
    cast: Cast, receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    settings.BLAST_WEBHOOK_TIMEOUT_S = 1.0
    port = receiver.server.server_address[1]
    # A TTL-0 record: a public address when checked, 127.0.0.1 for any later lookup.
    dns = FakeDNS(monkeypatch, {"rebind.example.com": [["93.184.215.14"], ["127.0.0.1"]]})
    make_webhook(cast.tenant_a, f"http://rebind.example.com:{port}/hook")
    message_event(cast)
    [delivery_id] = webhooks.fan_out()
    outcome = webhooks.attempt(delivery_id)

    assert outcome is not None and outcome.status == DeliveryStatus.PENDING
    assert receiver.requests() == []
    assert dns.calls["rebind.example.com"] == 1
    record = WebhookDelivery.objects.get(pk=delivery_id)
    assert record.error in ("connection failed", "timed out") and record.response_excerpt == ""


def test_every_resolved_address_is_checked(
    cast: Cast, receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    port = receiver.server.server_address[1]
    FakeDNS(monkeypatch, {"mixed.example.com": [["93.184.215.14", "127.0.0.1"]]})
    make_webhook(cast.tenant_a, f"http://mixed.example.com:{port}/hook")
    message_event(cast)
    [delivery_id] = webhooks.fan_out()
    webhooks.attempt(delivery_id)
    assert receiver.requests() == []
    record = WebhookDelivery.objects.get(pk=delivery_id)
    assert (record.error, record.response_excerpt, record.last_status_code) == ("refused by address policy", "", None)


@pytest.mark.urls(URLS)
def test_the_tenant_sees_no_reply_from_a_refused_address(cast: Cast, receiver: Receiver, settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    webhook = make_webhook(cast.tenant_a, receiver.url)  # saved before the policy, or by an operator
    message_event(cast)
    deliver_all()
    assert receiver.requests() == []
    [row] = cast.owner.get(f"/api/v1/webhooks/{webhook.key}/deliveries").json()["results"]
    assert (row["error"], row["response_excerpt"]) == ("refused by address policy", "")


def test_status_and_alert_webhooks_share_one_delivery_engine_and_status() -> None:
    from campaigns.models import WebhookDelivery as Tenant
    from monitoring.models import AlertDelivery
    from monitoring.models import DeliveryStatus as AlertStatus

    assert isinstance(webhooks.DELIVERIES, delivery.Deliveries) and webhooks.DELIVERIES.model is Tenant
    assert delivery.ALERTS.model is AlertDelivery
    assert DeliveryStatus is AlertStatus
    assert Tenant._meta.get_field("status").choices == AlertDelivery._meta.get_field("status").choices
