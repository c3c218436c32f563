"""Campaigns through the API: create with validation, the lifecycle actions
and their 409s, the report as JSON and CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
import time_machine

from campaigns import expansion
from campaigns.models import HOLD, Campaign, ContactList, Message, MessageStatus
from tests.campaigns.conftest import URLS, make_list, numbers
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)  # a Wednesday


@pytest.fixture
def contact_list(cast: Cast) -> ContactList:
    return make_list(cast.tenant_a, [(n, {"name": f"N{i}", "city": "Rio"}) for i, n in enumerate(numbers(5))])


def body(cast: Cast, chosen: ContactList, **extra: Any) -> dict[str, Any]:
    return {
        "name": "spring",
        "template": "{Hi|Hello} {{name}}",
        "contact_list": str(chosen.key),
        "instances": [str(cast.instance_a.key), str(cast.instance_a2.key)],
        **extra,
    }


def create(cast: Cast, contact_list: ContactList, **extra: Any) -> dict[str, Any]:
    response = cast.owner.post("/api/v1/campaigns", body(cast, contact_list, **extra), format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def act(cast: Cast, campaign_id: str, action: str):
    return cast.owner.post(f"/api/v1/campaigns/{campaign_id}/{action}")


def test_a_campaign_is_created_as_a_draft_with_the_default_pacing(cast: Cast, contact_list: ContactList) -> None:
    created = create(
        cast,
        contact_list,
        timezone="America/Sao_Paulo",
        allowed_hours={"start": "09:00", "end": "18:00", "weekdays": [0, 1, 2, 3, 4]},
    )
    assert created["status"] == "draft"
    assert (created["send_delay_min_s"], created["send_delay_max_s"]) == (20.0, 45.0)
    assert created["instances"] == [str(cast.instance_a.key), str(cast.instance_a2.key)]
    assert created["allowed_hours"] == {"start": "09:00", "end": "18:00", "weekdays": [0, 1, 2, 3, 4]}
    assert created["timezone"] == "America/Sao_Paulo" and created["rotation"] == "round_robin"
    assert cast.owner.get(f"/api/v1/campaigns/{created['id']}").json() == created


@pytest.mark.parametrize(
    ("hours", "shown"),
    [
        ({"start": "09:00", "end": "18:00"}, {"start": "09:00", "end": "18:00", "weekdays": []}),
        (
            {"start": "22:00:30", "end": "06:00", "weekdays": [4, 0, 4]},
            {"start": "22:00:30", "end": "06:00", "weekdays": [0, 4]},
        ),
        ({"weekdays": [5, 6]}, {"weekdays": [5, 6]}),
        ({"weekdays": [0, 1, 2, 3, 4, 5, 6]}, None),
        ({}, None),
        (None, None),
    ],
)
def test_allowed_hours_are_answered_as_they_were_written(
    cast: Cast, contact_list: ContactList, hours: Any, shown: Any
) -> None:
    created = create(cast, contact_list, allowed_hours=hours)
    assert created["allowed_hours"] == shown
    assert cast.owner.get(f"/api/v1/campaigns/{created['id']}").json()["allowed_hours"] == shown


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (
            {"template": "Hi {{surname}}"},
            "template",
            "Unknown template field {{surname}}: the contact list has city, name, phone.",
        ),
        ({"template": "{Hi|Hello"}, "template", "'{' is not closed with '}'"),
        ({"timezone": "Mars/Base"}, "timezone", "Unknown timezone 'Mars/Base'"),
        ({"allowed_hours": {"start": "09:00"}}, "allowed_hours", "Give both start and end, or neither."),
        ({"allowed_hours": {"start": "9am", "end": "5pm"}}, "allowed_hours", "A time of day is HH:MM"),
        ({"allowed_hours": {"start": "09:00:00.5", "end": "18:00"}}, "allowed_hours", "A time of day is HH:MM"),
        ({"allowed_hours": {"start": None, "end": None}}, "allowed_hours", "A time of day is HH:MM"),
        ({"allowed_hours": {"weekdays": [7]}}, "allowed_hours", "from 0 (Monday) to 6 (Sunday)"),
        ({"allowed_hours": {"weekdays": "0,1"}}, "allowed_hours", "from 0 (Monday) to 6 (Sunday)"),
        ({"allowed_hours": {"days": [1]}}, "allowed_hours", "Unknown key 'days'"),
        ({"allowed_hours": [9, 18]}, "allowed_hours", "Allowed hours are an object"),
        ({"timezone": " UTC"}, "timezone", "Unknown timezone ' UTC'"),
        ({"send_delay_min_s": 50, "send_delay_max_s": 10}, "send_delay_max_s", "below the minimum"),
        ({"send_delay_min_s": -1}, "send_delay_min_s", "greater than or equal to 0"),
        ({"instances": ["7d3c1a9e-0000-4000-8000-000000000000"]}, "instances", "No instance with id"),
        ({"contact_list": "7d3c1a9e-0000-4000-8000-000000000000"}, "contact_list", "No contact list with id"),
        ({"rotation": "random"}, "rotation", "is not a valid choice"),
        ({"status": "running"}, "status", "This field is read-only."),
    ],
)
def test_bad_campaigns_are_refused_field_by_field(
    cast: Cast, contact_list: ContactList, extra: dict[str, Any], field: str, message: str
) -> None:
    response = cast.owner.post("/api/v1/campaigns", body(cast, contact_list, **extra), format="json")
    assert response.status_code == 400, response.content
    errors = response.json()[field]
    text = str(errors)
    assert message in text, errors
    assert not Campaign.objects.exists()


def test_another_tenants_instances_and_lists_cannot_be_named(cast: Cast, contact_list: ContactList) -> None:
    theirs = make_list(cast.tenant_b, [(numbers(1)[0], {})], name="theirs")
    response = cast.outsider.post(
        "/api/v1/campaigns",
        {"name": "x", "contact_list": str(contact_list.key), "instances": [str(cast.instance_a.key)]},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"contact_list", "instances"}
    response = cast.owner.post("/api/v1/campaigns", body(cast, theirs), format="json")
    assert "No contact list with id" in response.json()["contact_list"][0]


def test_start_pause_resume_cancel_follow_the_lifecycle(
    cast: Cast, contact_list: ContactList, dispatched: dict[str, list[int]], django_capture_on_commit_callbacks: Any
) -> None:
    campaign_id = create(cast, contact_list)["id"]
    campaign = Campaign.objects.get(key=campaign_id)
    with django_capture_on_commit_callbacks(execute=True):
        started = act(cast, campaign_id, "start")
    assert started.status_code == 200 and started.json()["status"] == "running"
    assert dispatched["expansions"] == [campaign.pk]
    expansion.expand(campaign.pk)
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).count() == 5

    assert act(cast, campaign_id, "start").json() == {"detail": "The campaign is already running."}
    assert act(cast, campaign_id, "resume").status_code == 409

    paused = act(cast, campaign_id, "pause")
    assert paused.json()["status"] == "paused" and paused.json()["pause_reason"] == "manual"
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {HOLD}
    assert act(cast, campaign_id, "pause").json() == {"detail": "The campaign is already paused."}

    resumed = act(cast, campaign_id, "resume")
    assert resumed.json()["status"] == "running"
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {None}

    Message.objects.filter(pk=Message.objects.filter(campaign=campaign).order_by("id").first().pk).update(attempts=1)
    cancelled = act(cast, campaign_id, "cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert Message.objects.filter(campaign=campaign, status="failed", failure_reason="cancelled").count() == 4
    # The one a worker already wrote to a gateway is left to it.
    assert Message.objects.filter(campaign=campaign, status="queued", attempts=1).count() == 1
    assert act(cast, campaign_id, "cancel").json() == {
        "detail": "The campaign is cancelled: it cannot change any more."
    }


@time_machine.travel(NOW, tick=False)
def test_a_start_time_ahead_schedules_the_campaign(cast: Cast, contact_list: ContactList, dispatched: Any) -> None:
    campaign_id = create(cast, contact_list, start_at="2026-11-26T09:00:00Z")["id"]
    response = act(cast, campaign_id, "start")
    assert response.json()["status"] == "scheduled"
    assert act(cast, campaign_id, "pause").status_code == 409
    assert act(cast, campaign_id, "start").json()["detail"].startswith("The campaign is already scheduled")


def test_a_campaign_that_cannot_start_says_why(cast: Cast, contact_list: ContactList) -> None:
    empty = make_list(cast.tenant_a, [], name="empty")
    campaign_id = create(cast, empty, template="Hi", instances=[])["id"]
    response = act(cast, campaign_id, "start")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "The campaign cannot start: it has no instance to send through; its contact list is empty."
    )
    assert Campaign.objects.get(key=campaign_id).status == "draft"


def test_only_the_name_of_a_started_campaign_changes(cast: Cast, contact_list: ContactList, dispatched: Any) -> None:
    campaign_id = create(cast, contact_list)["id"]
    url = f"/api/v1/campaigns/{campaign_id}"
    assert cast.owner.patch(url, {"template": "Hey {{city}}"}, format="json").json()["template"] == "Hey {{city}}"
    act(cast, campaign_id, "start")
    response = cast.owner.patch(url, {"template": "Bye"}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"] == "The campaign is running: only its name can change."
    assert cast.owner.patch(url, {"name": "renamed"}, format="json").json()["name"] == "renamed"


def test_a_running_campaign_cannot_be_deleted_a_cancelled_one_can(
    cast: Cast, contact_list: ContactList, dispatched: Any
) -> None:
    campaign_id = create(cast, contact_list)["id"]
    act(cast, campaign_id, "start")
    response = cast.owner.delete(f"/api/v1/campaigns/{campaign_id}")
    assert response.status_code == 409 and "cancel it before deleting it" in response.json()["detail"]
    act(cast, campaign_id, "cancel")
    assert cast.owner.delete(f"/api/v1/campaigns/{campaign_id}").status_code == 204


def test_the_list_filters_by_status(cast: Cast, contact_list: ContactList, dispatched: Any) -> None:
    first = create(cast, contact_list)["id"]
    create(cast, contact_list, name="other")
    act(cast, first, "start")
    running = cast.owner.get("/api/v1/campaigns?status=running").json()["results"]
    assert [c["id"] for c in running] == [first]
    assert cast.owner.get("/api/v1/campaigns?status=nope").status_code == 400


def test_the_report_counts_statuses_failures_progress_and_throughput(
    cast: Cast, contact_list: ContactList, dispatched: Any
) -> None:
    campaign_id = create(cast, contact_list)["id"]
    campaign = Campaign.objects.get(key=campaign_id)
    with time_machine.travel(NOW, tick=False):
        act(cast, campaign_id, "start")
        expansion.expand(campaign.pk)
    rows = list(Message.objects.filter(campaign=campaign).order_by("id"))
    for minute, row in enumerate(rows[:3]):
        Message.objects.filter(pk=row.pk).update(status="delivered", sent_at=NOW + dt.timedelta(minutes=minute))
    Message.objects.filter(pk=rows[3].pk).update(
        status="failed", failure_reason="nack_permanent", error="=HYPERLINK(evil)"
    )
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        report = cast.owner.get(f"/api/v1/campaigns/{campaign_id}/report").json()
    assert report["counts"] == {"queued": 1, "sent": 0, "delivered": 3, "read": 0, "failed": 1}
    assert report["recipients"] == 5 and report["messages"] == 5
    assert report["progress"] == {"done": 4, "remaining": 1, "percent": 80.0, "expanded": True}
    assert report["failures"] == {"nack_permanent": 1}
    assert report["throughput"]["sent"] == 3
    # 3 sends in the 5 minutes since the first (docs/CAMPAIGNS.md, Report).
    assert report["throughput"]["per_minute_overall"] == 0.6
    assert report["throughput"]["per_minute_last_10_min"] == 0.6
    assert report["throughput"]["estimated_completion_at"] is not None

    for response in (
        cast.owner.get(f"/api/v1/campaigns/{campaign_id}/report.csv"),
        cast.owner.get(f"/api/v1/campaigns/{campaign_id}/report?format=csv"),
    ):
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert f"campaign-{campaign_id}.csv" in response["Content-Disposition"]
        lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert lines[0][:4] == ["message_id", "to", "instance", "status"]
        assert len(lines) == 6
        failed = next(line for line in lines if line[3] == "failed")
        assert failed[5] == "'=HYPERLINK(evil)"  # no formula in a spreadsheet


def test_report_errors_are_json_even_when_csv_was_asked(cast: Cast) -> None:
    for url in ("/api/v1/campaigns/nope/report?format=csv", "/api/v1/campaigns/nope/report.csv"):
        response = cast.owner.get(url)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "No campaign with this id."}
