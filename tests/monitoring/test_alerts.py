"""Alerts: raised once per transition from the event log and the platform's
state, posted to a real HTTP receiver on 127.0.0.1, signed, retried with
backoff when the receiver fails, and recorded. Alert webhook URLs follow the
outbound address policy, at save (model, admin) and at delivery."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from instances.models import (
    ConnectionEvent,
    EventKind,
    Gateway,
    Instance,
    Status,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
)
from monitoring import alerts, delivery, outbound
from monitoring.models import Alert, AlertDelivery, AlertState, AlertWebhook, DeliveryStatus
from tests.fixtures.dns import FakeDNS
from tests.fixtures.platform import wait_until
from tests.fixtures.schedules import RECOVERY_JOB_NAMES
from tests.fixtures.webhooks import Receiver
from tests.fixtures.webhooks import verify as verify_signature
from tests.monitoring.conftest import make_instances, make_platform_healthy, make_webhook

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _receivers_on_loopback(settings: Any) -> None:
    """The receivers here listen on 127.0.0.1: private targets allowed, except
    where a test turns the policy back on."""
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = True


def event(instance: Instance, kind: str, reason: str = "", **fields: Any) -> ConnectionEvent:
    return ConnectionEvent.objects.create(instance=instance, kind=kind, reason=reason, actor="test", **fields)


def deliver_all(ids: list[int]) -> list[delivery.Outcome | None]:
    return [delivery.attempt(i) for i in ids]


@pytest.fixture
def healthy(settings: Any) -> WorkerHeartbeat:
    """Platform conditions all fine (and the score ignored: a test's one or
    two instances would make it low), so that only instance alerts fire."""
    settings.BLAST_ALERT_SCORE_THRESHOLD = 0
    beat = make_platform_healthy()
    alerts.evaluate()
    return beat


def test_a_breaker_opening_is_sent_once_signed_and_recorded(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any
) -> None:
    webhook = make_webhook(receiver.url, secret="topsecret")
    [instance] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1, prefix="flaky")
    event(instance, EventKind.BREAKER_OPENED, "unavailable")

    ids = alerts.evaluate()
    assert len(ids) == 1
    [outcome] = deliver_all(ids)
    assert outcome is not None and outcome.status == DeliveryStatus.DELIVERED

    [request] = receiver.requests()
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert verify_signature(
        "topsecret", headers["x-blast-timestamp"], headers["x-blast-signature"], request.body, now=time.time()
    )
    assert not verify_signature(
        "wrong", headers["x-blast-timestamp"], headers["x-blast-signature"], request.body, now=time.time()
    )
    body = request.json()
    assert (body["kind"], body["status"], body["severity"]) == ("breaker_open", "firing", "warning")
    assert body["instance"]["name"] == "flaky0"
    assert body["instance"]["key"] == str(instance.key)
    assert body["tenant"] == "acme"
    assert headers["x-blast-alert-id"] == body["id"]

    record = AlertDelivery.objects.get(pk=ids[0])
    assert (record.status, record.attempts, record.last_status_code) == ("delivered", 1, 200)
    assert record.response_excerpt == '{"ok":true}'
    assert record.webhook == webhook and record.delivered_at is not None

    # Nothing new: nothing sent. The same condition again: nothing sent.
    assert alerts.evaluate() == []
    event(instance, EventKind.BREAKER_HALF_OPEN)
    event(instance, EventKind.BREAKER_OPENED, "unavailable", data={"trip_count": 2})
    assert alerts.evaluate() == []
    # Its recovery: one resolved alert.
    event(instance, EventKind.BREAKER_HALF_OPEN)
    event(instance, EventKind.READY)
    event(instance, EventKind.BREAKER_CLOSED)
    resolved = alerts.evaluate()
    deliver_all(resolved)
    assert [(r.json()["kind"], r.json()["status"]) for r in receiver.requests()] == [
        ("breaker_open", "firing"),
        ("breaker_open", "resolved"),
    ]
    assert Alert.objects.count() == 2


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any, settings: Any
) -> None:
    settings.BLAST_ALERT_RETRY_BASE_S = 0.2
    make_webhook(receiver.url)
    [instance] = make_instances(tenant, gateway, Status.LOGGED_OUT, 1)
    event(instance, EventKind.DISCONNECT, "logged_out", message="unlinked from the phone")
    [delivery_id] = alerts.evaluate()
    receiver.fail_next(2, status=503)

    first = delivery.attempt(delivery_id)
    assert first is not None and first.status == DeliveryStatus.PENDING and first.retry_in == 0.2
    record = AlertDelivery.objects.get(pk=delivery_id)
    assert (record.attempts, record.last_status_code, record.error) == (1, 503, "HTTP 503")
    assert record.response_excerpt == "receiver is down"
    # Not due yet: nobody may send it before its backoff ends.
    assert delivery.attempt(delivery_id) is None

    second = wait_until(lambda: delivery.attempt(delivery_id), timeout=10, interval=0.05)
    assert second.status == DeliveryStatus.PENDING and second.retry_in == 0.4
    third = wait_until(lambda: delivery.attempt(delivery_id), timeout=10, interval=0.05)
    assert third.status == DeliveryStatus.DELIVERED and third.attempts == 3

    requests = receiver.requests()
    assert len(requests) == 3
    assert len({r.headers["X-Blast-Alert-Id"] for r in requests}) == 1
    for request in requests:
        assert verify_signature(
            "s3cret",
            request.headers["X-Blast-Timestamp"],
            request.headers["X-Blast-Signature"],
            request.body,
            now=time.time(),
        )
    assert requests[0].json()["kind"] == "logged_out"
    record.refresh_from_db()
    assert (record.status, record.attempts, record.last_status_code, record.error) == ("delivered", 3, 200, "")


def test_a_delivery_gives_up_after_the_last_attempt(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any, settings: Any
) -> None:
    settings.BLAST_ALERT_MAX_ATTEMPTS = 2
    settings.BLAST_ALERT_RETRY_BASE_S = 0.05
    make_webhook(receiver.url)
    [instance] = make_instances(tenant, gateway, Status.REPLACED, 1)
    event(instance, EventKind.DISCONNECT, "replaced")
    [delivery_id] = alerts.evaluate()
    receiver.fail_next(5)
    delivery.attempt(delivery_id)
    last = wait_until(lambda: delivery.attempt(delivery_id), timeout=10, interval=0.02)
    assert last.status == DeliveryStatus.FAILED
    assert AlertDelivery.objects.get(pk=delivery_id).next_attempt_at is None
    assert delivery.attempt(delivery_id) is None


def test_an_unreachable_receiver_is_recorded_as_an_error(tenant: Tenant, gateway: Gateway, healthy: Any) -> None:
    from tests.monitoring.conftest import free_port

    make_webhook(f"http://127.0.0.1:{free_port()}/nobody")
    [instance] = make_instances(tenant, gateway, Status.FORBIDDEN, 1)
    event(instance, EventKind.DISCONNECT, "forbidden")
    [delivery_id] = alerts.evaluate()
    outcome = delivery.attempt(delivery_id)
    assert outcome is not None and outcome.status == DeliveryStatus.PENDING
    record = AlertDelivery.objects.get(pk=delivery_id)
    # Tenant staff read a fixed summary, not the network's own words.
    assert (record.last_status_code, record.error, record.response_excerpt) == (None, "connection failed", "")


def test_tenant_webhooks_get_only_their_tenants_alerts(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any
) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    platform_hook = make_webhook(receiver.url, name="platform")
    acme_hook = make_webhook(receiver.url, tenant=tenant, name="acme")
    other_hook = make_webhook(receiver.url, tenant=other, name="other")
    [mine] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1)
    event(mine, EventKind.BREAKER_OPENED, "timed_out")
    ids = alerts.evaluate()
    hooks = set(AlertDelivery.objects.filter(pk__in=ids).values_list("webhook_id", flat=True))
    assert hooks == {platform_hook.pk, acme_hook.pk}
    assert other_hook.pk not in hooks

    # A platform alert goes to platform-wide webhooks only.
    WorkerHeartbeat.objects.update(stopped_at=timezone.now())
    ids = alerts.evaluate()
    assert set(AlertDelivery.objects.filter(pk__in=ids).values_list("webhook_id", flat=True)) == {platform_hook.pk}


def test_disabled_webhooks_get_nothing(receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any) -> None:
    webhook = make_webhook(receiver.url)
    AlertWebhook.objects.filter(pk=webhook.pk).update(enabled=False)
    [instance] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1)
    event(instance, EventKind.BREAKER_OPENED, "timed_out")
    assert alerts.evaluate() == []
    assert Alert.objects.filter(kind="breaker_open").count() == 1  # recorded all the same


def test_no_live_worker_fires_once_and_resolves(receiver: Receiver, healthy: WorkerHeartbeat) -> None:
    make_webhook(receiver.url)
    WorkerHeartbeat.objects.filter(pk=healthy.pk).update(last_seen=timezone.now() - dt.timedelta(minutes=5))
    deliver_all(alerts.evaluate())
    assert alerts.evaluate() == []
    assert alerts.evaluate() == []
    WorkerHeartbeat.objects.filter(pk=healthy.pk).update(last_seen=timezone.now())
    deliver_all(alerts.evaluate())
    bodies = [r.json() for r in receiver.requests()]
    assert [(b["kind"], b["status"], b["severity"]) for b in bodies] == [
        ("no_live_worker", "firing", "critical"),
        ("no_live_worker", "resolved", "info"),
    ]
    assert AlertState.objects.get(key="platform:no_live_worker").state == "resolved"


def test_a_score_below_the_threshold_fires_once_and_resolves(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any, settings: Any
) -> None:
    settings.BLAST_ALERT_SCORE_THRESHOLD = 80
    make_webhook(receiver.url)
    connected = make_instances(tenant, gateway, Status.CONNECTED, 4)
    make_instances(tenant, gateway, Status.BACKING_OFF, 1)
    assert alerts.evaluate() == []  # 80: fine
    Instance.objects.filter(pk=connected[0].pk).update(status=Status.BACKING_OFF)
    deliver_all(alerts.evaluate())  # 60
    Instance.objects.filter(pk=connected[1].pk).update(status=Status.BACKING_OFF)
    assert alerts.evaluate() == []  # 40: the same condition
    Instance.objects.filter(status=Status.BACKING_OFF).update(status=Status.CONNECTED)
    deliver_all(alerts.evaluate())
    bodies = [r.json() for r in receiver.requests()]
    assert [(b["kind"], b["status"]) for b in bodies] == [("score_low", "firing"), ("score_low", "resolved")]
    assert bodies[0]["data"]["score"] == 60 and "below 80" in bodies[0]["summary"]


def test_stalled_recovery_jobs_fire(receiver: Receiver, healthy: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    make_webhook(receiver.url)
    PeriodicTask.objects.filter(name__in=RECOVERY_JOB_NAMES).update(
        last_run_at=timezone.now() - dt.timedelta(minutes=5)
    )
    deliver_all(alerts.evaluate())
    [request] = receiver.requests()
    assert (request.json()["kind"], request.json()["status"]) == ("beat_stalled", "firing")


def test_an_event_committed_late_is_not_missed(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any
) -> None:
    make_webhook(receiver.url)
    [instance] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1)
    base = (ConnectionEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 100
    # Ids base+1 and base+3 are visible; base+2 belongs to a transaction that
    # had not committed yet when the evaluator ran.
    event(instance, EventKind.ATTEMPT, id=base + 1)
    event(instance, EventKind.DISCONNECT, "unavailable", id=base + 3)
    assert alerts.evaluate() == []
    event(instance, EventKind.BREAKER_OPENED, "unavailable", id=base + 2)
    assert len(alerts.evaluate()) == 1
    assert alerts.evaluate() == []


def test_webhook_urls_must_be_http_or_https() -> None:
    from django.core.exceptions import ValidationError

    for bad in ["ftp://example.com/x", "javascript:alert(1)", "example.com/hook", "file:///etc/passwd"]:
        webhook = AlertWebhook(name="x", url=bad)
        with pytest.raises(ValidationError):
            webhook.full_clean()
    AlertWebhook(name="x", url="https://hooks.example.com/a?b=c").full_clean(exclude=["secret_encrypted"])


def test_secrets_are_stored_encrypted(receiver: Receiver) -> None:
    webhook = make_webhook(receiver.url, secret="plain-secret")
    raw = AlertWebhook.objects.values_list("secret_encrypted", flat=True).get(pk=webhook.pk)
    assert "plain-secret" not in raw
    assert AlertWebhook.objects.get(pk=webhook.pk).secret == "plain-secret"


def test_the_first_run_raises_nothing_about_past_events(
    receiver: Receiver, tenant: Tenant, gateway: Gateway, settings: Any
) -> None:
    settings.BLAST_ALERT_SCORE_THRESHOLD = 0
    make_platform_healthy()
    make_webhook(receiver.url)
    [instance] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1)
    event(instance, EventKind.BREAKER_OPENED, "unavailable")  # before monitoring was deployed
    assert alerts.evaluate() == []
    event(instance, EventKind.DISCONNECT, "logged_out")
    assert len(alerts.evaluate()) == 1


# -- the address policy ------------------------------------------------------------------

INTERNAL_URLS = ["http://127.0.0.1:8000/hook", "http://10.1.2.3/hook", "http://[::ffff:10.0.0.1]/x"]


def test_alert_webhooks_to_internal_addresses_fail_model_validation(settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    for url in [*INTERNAL_URLS, "https://user:pw@hooks.example.com/x", "http://2130706433/x"]:
        with pytest.raises(ValidationError) as raised:
            AlertWebhook(name="x", url=url).full_clean(exclude=["secret_encrypted"])
        assert "url" in raised.value.message_dict, url
    AlertWebhook(name="x", url="https://hooks.example.com/x").full_clean(exclude=["secret_encrypted"])


def _tenant_staff(tenant: Tenant) -> User:
    user = User.objects.create_user("acme-ops", password="x" * 12, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__endswith="alertwebhook"))
    TenantMembership.objects.create(user=user, tenant=tenant)
    return user


def test_the_admin_refuses_internal_alert_webhook_urls(client: Client, tenant: Tenant, settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    for user in (_tenant_staff(tenant), User.objects.create_superuser("root", password="x" * 12)):
        client.force_login(user)
        for url in INTERNAL_URLS:
            response = client.post(
                "/admin/monitoring/alertwebhook/add/",
                {"name": "probe", "url": url, "tenant": str(tenant.pk), "enabled": "on", "secret": "s"},
            )
            assert response.status_code == 200, url  # the form again, with the error
            assert outbound.NOT_PUBLIC in response.content.decode(), url
    assert not AlertWebhook.objects.exists()


def _one_alert(tenant: Tenant, gateway: Gateway) -> list[int]:
    [instance] = make_instances(tenant, gateway, Status.CIRCUIT_OPEN, 1)
    event(instance, EventKind.BREAKER_OPENED, "unavailable")
    return alerts.evaluate()


def test_an_internal_alert_webhook_is_refused_at_delivery_and_no_reply_shows(
    client: Client, receiver: Receiver, tenant: Tenant, gateway: Gateway, healthy: Any, settings: Any
) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    # Saved without validation: a row from before the policy, or a name that
    # resolved elsewhere when it was saved.
    make_webhook(receiver.url, tenant=tenant)
    [delivery_id] = _one_alert(tenant, gateway)
    outcome = delivery.attempt(delivery_id)
    assert outcome is not None and outcome.status == DeliveryStatus.PENDING
    assert receiver.requests() == []
    record = AlertDelivery.objects.get(pk=delivery_id)
    assert (record.last_status_code, record.error, record.response_excerpt) == (None, outbound.REFUSED, "")

    client.force_login(User.objects.create_superuser("root", password="x" * 12))
    page = client.get(f"/admin/monitoring/alertdelivery/{delivery_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert outbound.REFUSED in text
    assert "ok&quot;:true" not in text and '"ok":true' not in text  # the receiver's reply


def test_a_private_network_alert_webhook_is_never_connected_to(
    tenant: Tenant, gateway: Gateway, healthy: Any, settings: Any
) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    settings.BLAST_ALERT_TIMEOUT_S = 1.0
    make_webhook("http://10.255.255.1:9/hook", tenant=tenant)
    [delivery_id] = _one_alert(tenant, gateway)
    delivery.attempt(delivery_id)
    assert AlertDelivery.objects.get(pk=delivery_id).error == outbound.REFUSED


def test_an_alert_webhook_name_that_rebinds_to_loopback_never_reaches_it(
    receiver: Receiver,
    tenant: Tenant,
    gateway: Gateway,
    healthy: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    settings.BLAST_ALERT_TIMEOUT_S = 1.0
    port = receiver.server.server_address[1]
    dns = FakeDNS(monkeypatch, {"rebind.example.com": [["93.184.215.14"], ["127.0.0.1"]]})
    make_webhook(f"http://rebind.example.com:{port}/hook", tenant=tenant)
    [delivery_id] = _one_alert(tenant, gateway)
    delivery.attempt(delivery_id)
    assert receiver.requests() == []
    assert dns.calls["rebind.example.com"] == 1
    record = AlertDelivery.objects.get(pk=delivery_id)
    assert record.error in (outbound.CONNECTION_FAILED, outbound.TIMED_OUT) and record.response_excerpt == ""
