"""POST /api/v1/messages/batch: all-or-nothing validation, tenant scoping,
opt-outs, the quota, idempotency and one hint for the whole batch."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Message, MessageEvent, OptOut, TenantQuota
from tests.campaigns.conftest import URLS, numbers, received_hints
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

URL = "/api/v1/messages/batch"


def item(instance: Any, to: str, text: str = "Hello", **extra: Any) -> dict[str, Any]:
    return {"instance": str(instance.key), "to": to, "text": text, **extra}


def post(client: Any, items: Any) -> Any:
    return client.post(URL, {"messages": items}, format="json")


def test_a_batch_is_stored_answered_in_order_with_one_hint(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any
) -> None:
    phones = numbers(5)
    items = [item(cast.instance_a if n % 2 else cast.instance_a2, to, f"text {n}") for n, to in enumerate(phones)]
    items[0]["to"] = "+55 (11) 99999-0000"  # normalised like the single endpoint
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(cast.owner, items)
    assert response.status_code == 202, response.content
    body = response.json()["messages"]
    assert [m["text"] for m in body] == [f"text {n}" for n in range(5)]
    assert [m["to"] for m in body] == ["+5511999990000", *phones[1:]]
    assert [m["instance"] for m in body] == [i["instance"] for i in items]
    assert all(m["status"] == "queued" for m in body)
    stored = {str(m.key): m for m in Message.objects.all()}
    assert len(stored) == 5 and set(stored) == {m["id"] for m in body}
    assert stored[body[3]["id"]].text == "text 3" and stored[body[3]["id"]].instance_id == cast.instance_a.pk
    assert len(callbacks) == 1
    assert sorted(received_hints(hints_channel)) == sorted([cast.instance_a.pk, cast.instance_a2.pk])


def test_one_bad_item_refuses_the_whole_batch_with_its_index(cast: Cast) -> None:
    items = [item(cast.instance_a, to) for to in numbers(4)]
    items[2]["to"] = "12"
    items[3]["text"] = "   "
    response = post(cast.owner, items)
    assert response.status_code == 400, response.content
    errors = response.json()["messages"]
    assert errors[0] == errors[1] == {}
    assert "'12' is not a phone number" in errors[2]["to"][0]
    assert errors[3]["text"] == ["The text may not be empty or only spaces."]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"priority": 1}, "priority", "Unknown field."),
        ({"instance": "nope"}, "instance", "Must be a valid UUID."),
        ({"idempotency_key": "x" * 201}, "idempotency_key", "1-200 printable ASCII characters"),
        ({"text": "x" * 4097}, "text", "Ensure this field has no more than 4096 characters."),
    ],
)
def test_item_fields_are_validated_like_the_single_endpoint(
    cast: Cast, extra: dict[str, Any], field: str, message: str
) -> None:
    items = [item(cast.instance_a, numbers(1)[0]), {**item(cast.instance_a, numbers(1)[0]), **extra}]
    response = post(cast.owner, items)
    assert response.status_code == 400, response.content
    assert any(message in m for m in response.json()["messages"][1][field]), response.json()
    assert not Message.objects.exists()


def test_another_tenants_instance_reads_like_a_missing_one_and_stores_nothing(cast: Cast) -> None:
    missing = "7d3c1a9e-0000-4000-8000-000000000000"
    items = [item(cast.instance_a, "+5511999990001"), item(cast.instance_b, "+5511999990002")]
    items.append({**item(cast.instance_a, "+5511999990003"), "instance": missing})
    response = post(cast.owner, items)
    assert response.status_code == 400, response.content
    errors = response.json()["messages"]
    assert errors[0] == {}
    assert errors[1] == {"instance": [f"No instance with id {cast.instance_b.key}."]}
    assert errors[2] == {"instance": [f"No instance with id {missing}."]}
    assert not Message.objects.exists()


@pytest.mark.parametrize("key", [None, "revoked"])
def test_a_missing_or_revoked_key_is_a_401(cast: Cast, key: str | None) -> None:
    client = cast.client(cast.revoked_key_a if key == "revoked" else None)
    response = post(client, [item(cast.instance_a, "+5511999990001")])
    assert response.status_code == 401
    assert not Message.objects.exists()


def test_a_batch_over_the_maximum_is_a_400(cast: Cast, settings: Any) -> None:
    settings.BLAST_MESSAGE_BATCH_MAX = 3
    response = post(cast.owner, [item(cast.instance_a, to) for to in numbers(4)])
    assert response.status_code == 400
    assert "no more than 3" in response.json()["messages"]["non_field_errors"][0]
    assert not Message.objects.exists()
    assert post(cast.owner, [item(cast.instance_a, to) for to in numbers(3)]).status_code == 202


@pytest.mark.parametrize(("body", "message"), [({"messages": []}, "may not be empty"), ({}, "required")])
def test_an_empty_or_missing_list_is_a_400(cast: Cast, body: dict[str, Any], message: str) -> None:
    response = cast.owner.post(URL, body, format="json")
    assert response.status_code == 400
    assert message in str(response.json()["messages"])


def test_opted_out_items_are_stored_failed_and_not_hinted(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any
) -> None:
    OptOut.objects.create(tenant=cast.tenant_a, phone="+5511999990002")
    items = [item(cast.instance_a, "+5511999990001"), item(cast.instance_a2, "+5511999990002")]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(cast.owner, items)
    assert response.status_code == 202
    first, second = response.json()["messages"]
    assert (first["status"], first["failure_reason"]) == ("queued", "")
    assert (second["status"], second["failure_reason"]) == ("failed", "opted_out")
    failed = Message.objects.get(key=second["id"])
    assert failed.failed_at is not None and failed.attempts == 0
    assert list(MessageEvent.objects.values_list("message_id", "status", "data")) == [
        (failed.pk, "failed", {"reason": "opted_out"})
    ]
    assert received_hints(hints_channel) == [cast.instance_a.pk]


def test_a_batch_over_the_quota_is_a_429_and_stores_nothing(cast: Cast) -> None:
    TenantQuota.objects.create(tenant=cast.tenant_a, monthly_messages=3)
    assert post(cast.owner, [item(cast.instance_a, "+5511999990001")]).status_code == 202
    response = post(cast.owner, [item(cast.instance_a, to) for to in numbers(3)])
    assert response.status_code == 429
    assert response.json()["detail"].startswith("Monthly quota of 3 messages reached")
    assert int(response["Retry-After"]) > 0
    assert Message.objects.count() == 1
    # Opted-out items take no room: two new + one opted out fit the two left.
    OptOut.objects.create(tenant=cast.tenant_a, phone=numbers(3)[2])
    assert post(cast.owner, [item(cast.instance_a, to) for to in numbers(3)]).status_code == 202
    assert Message.objects.count() == 4


def test_a_replayed_batch_answers_the_same_messages_and_creates_nothing(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any
) -> None:
    items = [item(cast.instance_a, to, idempotency_key=f"k-{n}") for n, to in enumerate(numbers(3))]
    items.append(item(cast.instance_a2, "+5511999990009"))  # no key: a new message each time
    first = post(cast.owner, items)
    assert first.status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        again = post(cast.owner, items[:3])
    assert again.status_code == 202
    assert [m["id"] for m in again.json()["messages"]] == [m["id"] for m in first.json()["messages"][:3]]
    assert Message.objects.count() == 4
    assert received_hints(hints_channel, timeout=0.3) == []
    # A replay mixed with new items: the stored one answered, the new one created.
    mixed = post(cast.owner, [item(cast.instance_a, "+5511999990010", idempotency_key="k-new"), items[1]])
    assert mixed.status_code == 202
    assert mixed.json()["messages"][1]["id"] == first.json()["messages"][1]["id"]
    assert Message.objects.count() == 5


def test_a_key_reused_for_another_message_is_a_422_and_stores_nothing(cast: Cast) -> None:
    post(cast.owner, [item(cast.instance_a, "+5511999990001", idempotency_key="k-1")])
    response = post(
        cast.owner,
        [
            item(cast.instance_a, "+5511999990002", idempotency_key="k-2"),
            item(cast.instance_a, "+5511999990001", "Other text", idempotency_key="k-1"),
        ],
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("Item 1: ")
    assert Message.objects.count() == 1


def test_a_key_twice_in_one_batch_is_a_400(cast: Cast) -> None:
    items = [item(cast.instance_a, to, idempotency_key="same") for to in numbers(2)]
    response = post(cast.owner, items)
    assert response.status_code == 400
    errors = response.json()["messages"]
    assert errors[0] == {}
    assert errors[1] == {"idempotency_key": ["This idempotency key is also used by item 0 of this batch."]}
    assert not Message.objects.exists()


def test_batch_is_not_read_as_a_message_id(cast: Cast) -> None:
    assert cast.owner.get(URL).status_code == 405
