"""Expansion of a campaign into message rows: chunked, idempotent, opt-outs
and bad texts failed, the quota respected, instances rotated, the window
honoured, the instances hinted. The Celery task is called as a function."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, transaction

from campaigns import expansion, lifecycle
from campaigns.models import Campaign, Message, MessageEvent, OptOut, TenantQuota
from campaigns.tasks import expand_campaign
from tests.campaigns.conftest import connect, make_campaign, make_list, numbers, received_hints, statuses
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def running(cast: Cast, count: int = 10, **fields: Any) -> Campaign:
    contact_list = make_list(cast.tenant_a, [(n, {"name": f"N{i}"}) for i, n in enumerate(numbers(count))])
    instances = fields.pop("instances", [cast.instance_a, cast.instance_a2])
    campaign = make_campaign(cast.tenant_a, contact_list, instances, **fields)
    lifecycle.start(campaign.pk, "test")
    campaign.refresh_from_db()
    return campaign


def test_every_contact_gets_one_rendered_message_in_chunks(cast: Cast, settings: Any) -> None:
    settings.BLAST_CAMPAIGN_CHUNK = 4
    campaign = running(cast, 10, template="{Hi|Hello} {{name}}, this is {{phone}}")
    first = expansion.expand_chunk(campaign.pk)
    assert (first.created, first.more) == (4, True)
    assert Message.objects.filter(campaign=campaign).count() == 4
    expansion.expand(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.expanded_at is not None and campaign.expanded_count == 10
    rows = list(Message.objects.filter(campaign=campaign).order_by("id").values("to", "text", "contact__fields"))
    assert [r["to"] for r in rows] == numbers(10)
    for row in rows:
        greeting, rest = row["text"].split(" ", 1)
        assert greeting in {"Hi", "Hello"}
        assert rest == f"{row['contact__fields']['name']}, this is {row['to']}"


def test_running_the_expansion_again_creates_nothing(cast: Cast) -> None:
    campaign = running(cast, 7)
    assert expand_campaign(campaign.pk) == 7
    assert expand_campaign(campaign.pk) == 0
    # Even with the cursor rewound (a crash between a chunk and its cursor can
    # not happen, but a bug could), the unique constraint keeps one per contact.
    Campaign.objects.filter(pk=campaign.pk).update(expansion_cursor=0, expanded_at=None)
    assert expand_campaign(campaign.pk) == 0
    assert Message.objects.filter(campaign=campaign).count() == 7
    message = Message.objects.filter(campaign=campaign).first()
    assert message is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            tenant=cast.tenant_a,
            instance=cast.instance_a,
            campaign=campaign,
            contact=message.contact,
            to="+1",
            text="x",
        )


def test_the_same_contact_renders_the_same_text_whenever_it_is_expanded(cast: Cast) -> None:
    campaign = running(cast, 3, template="{a|b|c|d|e|f|g|h} {{name}}")
    expansion.expand(campaign.pk)
    texts = list(Message.objects.filter(campaign=campaign).order_by("id").values_list("text", flat=True))
    Message.objects.filter(campaign=campaign).delete()
    Campaign.objects.filter(pk=campaign.pk).update(expansion_cursor=0, expanded_at=None, expanded_count=0)
    expansion.expand(campaign.pk)
    assert list(Message.objects.filter(campaign=campaign).order_by("id").values_list("text", flat=True)) == texts


def test_opted_out_numbers_get_a_failed_row_and_are_never_queued(cast: Cast) -> None:
    campaign = running(cast, 4)
    OptOut.objects.create(tenant=cast.tenant_a, phone=numbers(4)[1])
    expansion.expand(campaign.pk)
    failed = Message.objects.get(campaign=campaign, to=numbers(4)[1])
    assert (failed.status, failed.failure_reason, failed.attempts) == ("failed", "opted_out", 0)
    assert list(MessageEvent.objects.filter(message=failed).values_list("status", flat=True)) == ["failed"]
    assert statuses(campaign) == {"queued": 3, "failed": 1}


def test_a_text_that_renders_empty_or_too_long_fails_with_invalid_text(cast: Cast) -> None:
    contact_list = make_list(
        cast.tenant_a,
        [(numbers(3)[0], {"bio": ""}), (numbers(3)[1], {"bio": "x" * 1000}), (numbers(3)[2], {"bio": "ok"})],
    )
    campaign = make_campaign(
        cast.tenant_a, contact_list, [cast.instance_a], template="{{bio}}{{bio}}{{bio}}{{bio}}{{bio}}"
    )
    lifecycle.start(campaign.pk, "test")
    expansion.expand(campaign.pk)
    reasons = dict(Message.objects.filter(campaign=campaign).values_list("to", "failure_reason"))
    assert reasons == {numbers(3)[0]: "invalid_text", numbers(3)[1]: "invalid_text", numbers(3)[2]: ""}


def test_the_quota_stops_the_expansion_and_pauses_the_campaign(cast: Cast) -> None:
    TenantQuota.objects.create(tenant=cast.tenant_a, monthly_messages=6)
    Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to=numbers(1)[0], text="earlier")
    campaign = running(cast, 10)
    OptOut.objects.create(tenant=cast.tenant_a, phone=numbers(10)[2])  # takes no quota
    result = expansion.expand(campaign.pk)
    assert result.stopped == "quota"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "quota_exceeded")
    assert "monthly quota of 6 messages is used up" in campaign.status_message
    assert statuses(campaign) == {"queued": 5, "failed": 1}
    # The queued ones were within the quota: they still go out (not held).
    assert not Message.objects.filter(campaign=campaign, not_before__isnull=False).exists()
    # With room again, resuming carries on from the first contact left out.
    TenantQuota.objects.filter(tenant=cast.tenant_a).update(monthly_messages=100)
    lifecycle.resume(campaign.pk, "test")
    expansion.expand(campaign.pk)
    assert statuses(campaign) == {"queued": 9, "failed": 1}
    assert sorted(Message.objects.filter(campaign=campaign).values_list("to", flat=True)) == sorted(numbers(10))


def test_round_robin_deals_contacts_over_the_connected_instances(cast: Cast) -> None:
    campaign = running(cast, 6)
    expansion.expand(campaign.pk)  # none connected: all instances take turns
    per_instance = [
        i for i in Message.objects.filter(campaign=campaign).order_by("id").values_list("instance_id", flat=True)
    ]
    assert per_instance == [cast.instance_a.pk, cast.instance_a2.pk] * 3

    connect(cast.instance_a2)
    second = make_campaign(cast.tenant_a, campaign.contact_list, [cast.instance_a, cast.instance_a2], name="second")
    lifecycle.start(second.pk, "test")
    expansion.expand(second.pk)
    # Only a2 is connected: it takes every message.
    assert set(Message.objects.filter(campaign=second).values_list("instance_id", flat=True)) == {cast.instance_a2.pk}


def test_least_loaded_gives_messages_to_the_emptiest_instance(cast: Cast) -> None:
    for n in range(4):
        Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to=numbers(1)[0], text=f"busy {n}")
    campaign = running(cast, 6, rotation="least_loaded")
    expansion.expand(campaign.pk)
    counts = {
        pk: Message.objects.filter(campaign=campaign, instance_id=pk).count()
        for pk in (cast.instance_a.pk, cast.instance_a2.pk)
    }
    # instance_a had 4 queued: a2 takes 5 of the 6 (4 to catch up, then alternating).
    assert counts == {cast.instance_a.pk: 1, cast.instance_a2.pk: 5}


@time_machine.travel(dt.datetime(2026, 11, 28, 15, 0, tzinfo=dt.UTC), tick=False)  # a Saturday
def test_outside_the_allowed_hours_messages_wait_for_the_next_window(cast: Cast) -> None:
    campaign = running(
        cast,
        3,
        time_zone="America/Sao_Paulo",
        allowed_start=dt.time(9),
        allowed_end=dt.time(18),
        allowed_weekdays=[0, 1, 2, 3, 4],
    )
    expansion.expand(campaign.pk)
    monday_nine = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    assert set(Message.objects.filter(campaign=campaign).values_list("not_before", flat=True)) == {monday_nine}


def test_a_chunk_hints_the_instances_it_filled(
    cast: Cast, hints_channel: str, django_capture_on_commit_callbacks: Any
) -> None:
    campaign = running(cast, 4)
    with django_capture_on_commit_callbacks(execute=True):
        expansion.expand_chunk(campaign.pk)
    assert sorted(received_hints(hints_channel)) == [cast.instance_a.pk, cast.instance_a2.pk]


def test_a_paused_or_cancelled_campaign_is_not_expanded(cast: Cast) -> None:
    campaign = running(cast, 4)
    lifecycle.pause(campaign.pk, "test")
    assert expansion.expand(campaign.pk).stopped == "not_running"
    lifecycle.cancel(campaign.pk, "test")
    assert expansion.expand(campaign.pk).stopped == "not_running"
    assert not Message.objects.filter(campaign=campaign).exists()


def test_a_long_campaign_requeues_itself_after_its_chunk_budget(
    cast: Cast, settings: Any, dispatched: dict[str, list[int]]
) -> None:
    settings.BLAST_CAMPAIGN_CHUNK = 2
    settings.BLAST_CAMPAIGN_CHUNKS_PER_TASK = 2
    campaign = running(cast, 9)
    assert expand_campaign(campaign.pk) == 4
    assert dispatched["expansions"] == [campaign.pk]
    while dispatched["expansions"]:
        dispatched["expansions"].pop()
        expand_campaign(campaign.pk)
    assert Message.objects.filter(campaign=campaign).count() == 9
