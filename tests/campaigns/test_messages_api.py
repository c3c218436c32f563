"""POST /api/v1/instances/{id}/messages, GET /api/v1/messages[/{id}]:
validation, idempotency, opt-outs, the monthly quota, the hint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from campaigns.models import Message, MessageEvent, MessageStatus, OptOut, TenantQuota
from tests.campaigns.conftest import URLS, make_campaign, make_list, received_hints
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

TO = "+5511999990001"


def send(cast: Cast, body: dict[str, Any], key: str | None = None, instance: Any = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    instance = instance or cast.instance_a
    return cast.owner.post(f"/api/v1/instances/{instance.key}/messages", body, format="json", **headers)


def test_a_message_is_stored_answered_202_and_the_owner_is_hinted(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = send(cast, {"to": "+55 (11) 99999-0001", "text": "Hello"})
    assert response.status_code == 202, response.content
    body = response.json()
    message = Message.objects.get(key=body["id"])
    assert (message.to, message.text, message.status, message.instance_id) == (
        TO,
        "Hello",
        "queued",
        cast.instance_a.pk,
    )
    assert body["to"] == TO and body["status"] == "queued" and body["instance"] == str(cast.instance_a.key)
    assert body["campaign"] is None and body["held"] is False
    assert response["Location"] == f"/api/v1/messages/{message.key}"
    assert received_hints(hints_channel) == [cast.instance_a.pk]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"text": "x"}, "to", "This field is required."),
        ({"to": "12", "text": "x"}, "to", "'12' is not a phone number"),
        ({"to": "+1 555 000 0001", "text": "x"}, "to", "'+1 555 000 0001' is not a valid phone number."),
        ({"to": "(11) 99999-0001", "text": "x"}, "to", "start it with + and the country code"),
        ({"to": 5511999990001, "text": "x"}, "to", "Not a valid string."),
        ({"to": TO}, "text", "This field is required."),
        ({"to": TO, "text": ""}, "text", "This field may not be blank."),
        ({"to": TO, "text": "   \n"}, "text", "The text may not be empty or only spaces."),
        ({"to": TO, "text": "x" * 4097}, "text", "Ensure this field has no more than 4096 characters."),
        ({"to": TO, "text": "bad\x00text"}, "text", "Null characters are not allowed."),
        ({"to": TO, "text": "x", "priority": 1}, "priority", "Unknown field."),
        ({"to": TO, "text": "x", "expires_at": "tomorrow"}, "expires_at", "Datetime has wrong format."),
        ({"to": TO, "text": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "Must be in the future."),
    ],
)
def test_bad_input_is_refused_field_by_field_and_stores_nothing(
    cast: Cast, body: dict[str, Any], field: str, message: str
) -> None:
    response = send(cast, body)
    assert response.status_code == 400, response.content
    assert any(message in m for m in response.json()[field]), response.json()
    assert not Message.objects.exists()


def test_an_expiry_is_stored_and_shown(cast: Cast) -> None:
    response = send(cast, {"to": TO, "text": "Flash sale", "expires_at": "2999-01-01T10:00:00Z"})
    assert response.status_code == 202, response.content
    assert response.json()["expires_at"] == "2999-01-01T10:00:00Z"
    assert Message.objects.get().expires_at == dt.datetime(2999, 1, 1, 10, tzinfo=dt.UTC)
    assert send(cast, {"to": TO, "text": "No expiry"}).json()["expires_at"] is None


def test_a_text_of_exactly_4096_characters_is_accepted(cast: Cast) -> None:
    assert send(cast, {"to": TO, "text": "é" * 4096}).status_code == 202


def test_the_same_idempotency_key_returns_the_same_message(cast: Cast) -> None:
    first = send(cast, {"to": TO, "text": "Hello"}, key="order-42")
    again = send(cast, {"to": "+55 11 99999-0001", "text": "Hello"}, key="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Message.objects.count() == 1
    assert Message.objects.get().idempotency_key == "order-42"


def test_a_key_reused_for_another_message_is_a_422_and_creates_nothing(cast: Cast) -> None:
    first = send(cast, {"to": TO, "text": "Hello"}, key="order-42")
    response = send(cast, {"to": TO, "text": "Goodbye"}, key="order-42")
    assert response.status_code == 422
    assert first.json()["id"] in response.json()["detail"]
    assert send(cast, {"to": TO, "text": "Hello"}, key="order-42", instance=cast.instance_a2).status_code == 422
    assert Message.objects.count() == 1


def test_keys_are_per_tenant(cast: Cast) -> None:
    send(cast, {"to": TO, "text": "Hello"}, key="k1")
    other = cast.outsider.post(
        f"/api/v1/instances/{cast.instance_b.key}/messages",
        {"to": TO, "text": "Hello"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert other.status_code == 202
    assert Message.objects.count() == 2


@pytest.mark.parametrize("key", ["", " ", "x" * 201, "naïve", "tab\there"])
def test_a_malformed_idempotency_key_is_a_400(cast: Cast, key: str) -> None:
    response = send(cast, {"to": TO, "text": "Hello"}, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Message.objects.exists()


def test_a_message_to_an_opted_out_number_is_accepted_and_failed_at_once(cast: Cast, hints_channel: str) -> None:
    OptOut.objects.create(tenant=cast.tenant_a, phone=TO)
    response = send(cast, {"to": TO, "text": "Hello"})
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["failure_reason"]) == ("failed", "opted_out")
    message = Message.objects.get()
    assert message.failed_at is not None and message.attempts == 0
    assert list(MessageEvent.objects.filter(message=message).values_list("status", "data")) == [
        ("failed", {"reason": "opted_out"})
    ]
    assert received_hints(hints_channel, timeout=0.3) == []


def test_another_tenants_opt_out_does_not_apply(cast: Cast) -> None:
    OptOut.objects.create(tenant=cast.tenant_b, phone=TO)
    assert send(cast, {"to": TO, "text": "Hello"}).json()["status"] == "queued"


@time_machine.travel(dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC), tick=False)
def test_over_the_monthly_quota_is_a_429_until_next_month(cast: Cast) -> None:
    TenantQuota.objects.create(tenant=cast.tenant_a, monthly_messages=2)
    assert send(cast, {"to": TO, "text": "1"}, key="k-1").status_code == 202
    assert send(cast, {"to": TO, "text": "2"}).status_code == 202
    response = send(cast, {"to": TO, "text": "3"})
    assert response.status_code == 429
    assert response.json()["detail"].startswith(
        "Monthly quota of 2 messages reached; it resets on 2026-12-01 00:00 UTC."
    )
    assert int(response["Retry-After"]) == 10 * 86400 + 12 * 3600
    assert Message.objects.count() == 2
    # A new key does not get around it; a replay of an accepted message is no new message.
    assert send(cast, {"to": TO, "text": "x"}, key="k-2").status_code == 429
    assert send(cast, {"to": TO, "text": "1"}, key="k-1").status_code == 202
    # Another tenant is not affected.
    other = cast.outsider.post(
        f"/api/v1/instances/{cast.instance_b.key}/messages", {"to": TO, "text": "x"}, format="json"
    )
    assert other.status_code == 202
    with time_machine.travel(dt.datetime(2026, 12, 1, 0, 0, 1, tzinfo=dt.UTC), tick=False):
        assert send(cast, {"to": TO, "text": "4"}).status_code == 202


def test_the_quota_endpoint_shows_the_use(cast: Cast, settings: Any) -> None:
    settings.BLAST_TENANT_MONTHLY_QUOTA = 10
    send(cast, {"to": TO, "text": "1"})
    OptOut.objects.create(tenant=cast.tenant_a, phone="+5511999990002")
    send(cast, {"to": "+5511999990002", "text": "never sent"})
    body = cast.owner.get("/api/v1/quota").json()
    assert (body["monthly_limit"], body["used"], body["remaining"]) == (10, 1, 9)
    assert cast.outsider.get("/api/v1/quota").json()["used"] == 0


def test_an_unlimited_tenant_sees_no_limit(cast: Cast) -> None:
    body = cast.owner.get("/api/v1/quota").json()
    assert body["monthly_limit"] is None and body["remaining"] is None


def test_a_message_is_read_back_by_id(cast: Cast) -> None:
    created = send(cast, {"to": TO, "text": "Hello"}).json()
    response = cast.owner.get(f"/api/v1/messages/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("bad", ["not-a-uuid", "7d3c1a9e-0000-4000-8000-000000000000", "1"])
def test_an_unknown_message_id_is_a_404(cast: Cast, bad: str) -> None:
    response = cast.owner.get(f"/api/v1/messages/{bad}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No message with this id."}


def test_the_list_filters_by_instance_status_and_campaign(cast: Cast) -> None:
    contact_list = make_list(cast.tenant_a, [(TO, {})])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="Hi")
    a = send(cast, {"to": TO, "text": "a"}).json()["id"]
    b = send(cast, {"to": TO, "text": "b"}, instance=cast.instance_a2).json()["id"]
    in_campaign = Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, campaign=campaign, to=TO, text="c"
    )
    Message.objects.filter(key=b).update(status=MessageStatus.SENT)

    def ids(query: str) -> list[str]:
        response = cast.owner.get(f"/api/v1/messages{query}")
        assert response.status_code == 200, response.content
        return [m["id"] for m in response.json()["results"]]

    assert ids("") == [str(in_campaign.key), b, a]
    assert ids(f"?instance={cast.instance_a2.key}") == [b]
    assert ids("?status=sent") == [b]
    assert ids(f"?campaign={campaign.key}") == [str(in_campaign.key)]
    assert ids(f"?instance={cast.instance_b.key}") == []  # another tenant's instance: nothing, no leak
    assert cast.owner.get("/api/v1/messages?status=lost").status_code == 400
    assert cast.owner.get("/api/v1/messages?instance=nope").status_code == 400
    page = cast.owner.get("/api/v1/messages?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_a_held_message_shows_held_not_a_year_9999(cast: Cast) -> None:
    from campaigns.models import HOLD

    created = send(cast, {"to": TO, "text": "Hello"}).json()
    Message.objects.filter(key=created["id"]).update(not_before=HOLD)
    body = cast.owner.get(f"/api/v1/messages/{created['id']}").json()
    assert body["held"] is True and body["not_before"] is None
