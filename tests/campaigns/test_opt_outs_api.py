"""The opt-out list through the API: add (queued messages fail), list, remove."""

from __future__ import annotations

import pytest

from campaigns.models import Message
from tests.campaigns.conftest import URLS
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

PHONE = "+5511999990001"


def test_an_opt_out_is_added_idempotently_and_fails_unsent_messages(cast: Cast) -> None:
    unsent = Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to=PHONE, text="later")
    created = cast.owner.post(
        "/api/v1/opt-outs", {"phone": "+55 11 99999 0001", "note": "asked by phone"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert (created.json()["phone"], created.json()["source"], created.json()["note"]) == (
        PHONE,
        "api",
        "asked by phone",
    )
    assert cast.owner.post("/api/v1/opt-outs", {"phone": PHONE}, format="json").status_code == 200
    assert Message.objects.get(pk=unsent.pk).failure_reason == "opted_out"
    assert [o["phone"] for o in cast.owner.get("/api/v1/opt-outs").json()["results"]] == [PHONE]


def test_an_opt_out_is_removed_by_number(cast: Cast) -> None:
    cast.owner.post("/api/v1/opt-outs", {"phone": PHONE}, format="json")
    assert cast.owner.delete("/api/v1/opt-outs/+55 11 99999 0001").status_code == 204
    assert cast.owner.delete(f"/api/v1/opt-outs/{PHONE}").status_code == 404
    assert cast.owner.delete("/api/v1/opt-outs/not-a-number").status_code == 404


def test_a_bad_number_is_a_400(cast: Cast) -> None:
    response = cast.owner.post("/api/v1/opt-outs", {"phone": "nope"}, format="json")
    assert response.status_code == 400 and "phone" in response.json()
