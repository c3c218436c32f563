"""The campaign beat job, step by step, with the clock pinned (time-machine):
scheduled starts, allowed hours, pausing while no instance is connected,
resuming, completing, re-dispatching a stalled expansion."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from campaigns import expansion, jobs, lifecycle
from campaigns.models import HOLD, Campaign, Message, MessageStatus
from instances.models import Instance, Status
from tests.campaigns.conftest import connect, make_campaign, make_list, numbers, received_hints, statuses
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

# Sao Paulo is UTC-3: 09:00-18:00 there is 12:00-21:00 UTC. 2026-11-25 is a Wednesday.
WED_0859 = dt.datetime(2026, 11, 25, 11, 59, tzinfo=dt.UTC)
WED_0900 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
WED_1700 = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)
WED_1800 = dt.datetime(2026, 11, 25, 21, 0, tzinfo=dt.UTC)
THU_0900 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def at(moment: dt.datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def office_campaign(cast: Cast, count: int = 4, **fields: Any) -> Campaign:
    contact_list = make_list(cast.tenant_a, [(n, {}) for n in numbers(count)])
    hours = {
        "time_zone": "America/Sao_Paulo",
        "allowed_start": dt.time(9),
        "allowed_end": dt.time(18),
        "allowed_weekdays": [0, 1, 2, 3, 4],
    }
    return make_campaign(
        cast.tenant_a, contact_list, [cast.instance_a, cast.instance_a2], template="Hi", **{**hours, **fields}
    )


def anytime_campaign(cast: Cast) -> Campaign:
    return office_campaign(cast, allowed_start=None, allowed_end=None, allowed_weekdays=[])


def settle_instances(cast: Cast, moment: dt.datetime, status: str = Status.CONNECTED) -> None:
    Instance.objects.filter(tenant=cast.tenant_a).update(
        status=status, status_changed_at=moment - dt.timedelta(hours=1)
    )


def test_a_scheduled_campaign_starts_at_its_start_time_not_before(
    cast: Cast, dispatched: dict[str, list[int]], django_capture_on_commit_callbacks: Any
) -> None:
    campaign = office_campaign(cast, start_at=WED_0900)
    settle_instances(cast, WED_0859)
    with at(WED_0859 - dt.timedelta(minutes=5)):
        lifecycle.start(campaign.pk, "test")
    with at(WED_0859), django_capture_on_commit_callbacks(execute=True):
        assert jobs.tick()["started"] == 0
    assert Campaign.objects.get(pk=campaign.pk).status == "scheduled"
    with at(WED_0900), django_capture_on_commit_callbacks(execute=True):
        assert jobs.tick()["started"] == 1
    campaign.refresh_from_db()
    assert (campaign.status, campaign.started_at) == ("running", WED_0900)
    assert dispatched["expansions"] == [campaign.pk]


def test_messages_are_held_before_the_window_closes_and_released_when_it_opens(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.BLAST_CAMPAIGN_WINDOW_GUARD_S = 30
    campaign = office_campaign(cast)
    settle_instances(cast, WED_1700)
    with at(WED_1700):
        lifecycle.start(campaign.pk, "test")
        expansion.expand(campaign.pk)
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {None}
    retry_later = Message.objects.filter(campaign=campaign).order_by("id").first()
    assert retry_later is not None
    Message.objects.filter(pk=retry_later.pk).update(not_before=THU_0900 + dt.timedelta(hours=2))  # a nack's retry

    with at(WED_1800 - dt.timedelta(seconds=31)):
        assert jobs.tick()["windows"] == 0  # still more than the guard before the close
    with at(WED_1800 - dt.timedelta(seconds=29)):
        assert jobs.tick()["windows"] == 1
    not_before = dict(Message.objects.filter(campaign=campaign).values_list("id", "not_before"))
    assert not_before.pop(retry_later.pk) == THU_0900 + dt.timedelta(hours=2)  # later already: untouched
    assert set(not_before.values()) == {THU_0900}
    campaign.refresh_from_db()
    assert campaign.window_opens_at == THU_0900
    assert campaign.status_message == "Outside its allowed hours: sending resumes at 2026-11-26 12:00 UTC."

    with at(WED_1800 + dt.timedelta(hours=3)):
        assert jobs.tick()["windows"] == 0  # nothing new while closed
    received_hints(hints_channel, timeout=0.2)
    with at(THU_0900), django_capture_on_commit_callbacks(execute=True):
        assert jobs.tick()["windows"] == 1
    assert Campaign.objects.get(pk=campaign.pk).window_opens_at is None
    assert sorted(received_hints(hints_channel)) == [cast.instance_a.pk, cast.instance_a2.pk]
    due = Message.objects.filter(campaign=campaign, not_before__lte=THU_0900).count()
    assert due == 3


def test_a_campaign_pauses_while_none_of_its_instances_is_connected_and_resumes_after(
    cast: Cast, hints_channel: str, dispatched: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.BLAST_CAMPAIGN_PAUSE_GRACE_S = 15
    campaign = anytime_campaign(cast)
    settle_instances(cast, WED_0900, Status.BACKING_OFF)
    with at(WED_0900):
        lifecycle.start(campaign.pk, "test")
        expansion.expand(campaign.pk)
        # One of them changed status moments ago: within the grace, no pause yet.
        Instance.objects.filter(pk=cast.instance_a.pk).update(status_changed_at=WED_0900 - dt.timedelta(seconds=5))
        assert jobs.tick()["paused"] == 0
    with at(WED_0900 + dt.timedelta(seconds=20)):
        assert jobs.tick()["paused"] == 1
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "no_connected_instance")
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {HOLD}

    with at(WED_0900 + dt.timedelta(minutes=1)):
        assert jobs.tick()["resumed"] == 0
    received_hints(hints_channel, timeout=0.2)
    connect(cast.instance_a2)
    with at(WED_0900 + dt.timedelta(minutes=2)), django_capture_on_commit_callbacks(execute=True):
        assert jobs.tick()["resumed"] == 1
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("running", "")
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {None}
    assert sorted(received_hints(hints_channel)) == [cast.instance_a.pk, cast.instance_a2.pk]


def test_a_campaign_paused_by_the_tenant_does_not_resume_by_itself(cast: Cast) -> None:
    campaign = anytime_campaign(cast)
    settle_instances(cast, WED_0900)
    lifecycle.start(campaign.pk, "test")
    lifecycle.pause(campaign.pk, "test")
    assert jobs.tick()["resumed"] == 0
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"


def test_pausing_an_auto_paused_campaign_makes_it_the_tenants_pause(cast: Cast) -> None:
    campaign = anytime_campaign(cast)
    settle_instances(cast, WED_0900, Status.DISCONNECTED)
    lifecycle.start(campaign.pk, "test")
    with at(WED_0900 + dt.timedelta(hours=1)):
        jobs.tick()
    assert Campaign.objects.get(pk=campaign.pk).pause_reason == "no_connected_instance"
    lifecycle.pause(campaign.pk, "api-key:1:owner")
    connect(cast.instance_a)
    jobs.tick()
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "manual")


def test_a_campaign_completes_when_every_message_is_final(cast: Cast) -> None:
    campaign = anytime_campaign(cast)
    settle_instances(cast, WED_0900)
    lifecycle.start(campaign.pk, "test")
    assert jobs.tick()["completed"] == 0  # not expanded yet
    expansion.expand(campaign.pk)
    ids = list(Message.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    Message.objects.filter(id__in=ids[:-1]).update(status=MessageStatus.DELIVERED)
    assert jobs.tick()["completed"] == 0
    Message.objects.filter(id=ids[-1]).update(status=MessageStatus.FAILED)
    assert jobs.tick()["completed"] == 1
    campaign.refresh_from_db()
    assert campaign.status == "completed" and campaign.completed_at is not None
    assert statuses(campaign) == {"delivered": 3, "failed": 1}


def test_a_stalled_expansion_is_dispatched_again(cast: Cast, dispatched: dict[str, list[int]], settings: Any) -> None:
    settings.BLAST_CAMPAIGN_EXPANSION_STALL_S = 60
    campaign = anytime_campaign(cast)
    settle_instances(cast, WED_0900)
    with at(WED_0900):
        lifecycle.start(campaign.pk, "test")
    with at(WED_0900 + dt.timedelta(seconds=30)):
        assert jobs.tick()["expansions"] == 0
    with at(WED_0900 + dt.timedelta(seconds=61)):
        assert jobs.tick()["expansions"] == 1
    assert dispatched["expansions"] == [campaign.pk]
