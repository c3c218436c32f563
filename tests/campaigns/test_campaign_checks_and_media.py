"""Campaigns that check their recipients first, and campaigns with a media.

With ``check_numbers`` each chunk's numbers are answered from the tenant's
cache or asked in one check linked to the campaign; the chunk waits for it
(the cursor does not move) and the check's end queues the expansion again.
Numbers not on the network are skipped with ``not_on_network`` and counted
as skipped by the report; a check the gateway cannot answer lets the
numbers go out unchecked. A campaign's media goes with every message, its
template being the caption. The expansion is called as a function; the real
worker and simulator are test_rich_end_to_end.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from campaigns import expansion, lifecycle, numbers
from campaigns.models import Campaign, KnownNumber, Message, NumberCheck
from campaigns.reports import report
from media.models import Media
from tests.campaigns.conftest import URLS, connect, make_campaign, make_list, statuses
from tests.campaigns.conftest import numbers as phone_numbers
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]


def running(cast: Cast, count: int, **fields: Any) -> Campaign:
    contact_list = make_list(cast.tenant_a, [(n, {"name": f"N{i}"}) for i, n in enumerate(phone_numbers(count))])
    connect(cast.instance_a)
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], **fields)
    lifecycle.start(campaign.pk, "test")
    campaign.refresh_from_db()
    return campaign


def test_a_checking_campaign_waits_for_its_check_then_skips_the_absent_numbers(
    cast: Cast, dispatched: dict[str, list[int]], django_capture_on_commit_callbacks: Any
) -> None:
    phones = phone_numbers(4)
    # The cache already knows two of them: one on the network, one not.
    now = dt.datetime.now(dt.UTC)
    KnownNumber.objects.create(tenant=cast.tenant_a, phone=phones[0], on_network=True, checked_at=now)
    KnownNumber.objects.create(tenant=cast.tenant_a, phone=phones[1], on_network=False, checked_at=now)
    campaign = running(cast, 4, check_numbers=True)

    waiting = expansion.expand_chunk(campaign.pk)
    assert (waiting.stopped, waiting.created, waiting.more) == ("checking", 0, False)
    assert Message.objects.filter(campaign=campaign).count() == 0
    check = NumberCheck.objects.get()
    assert (check.campaign_id, check.instance_id, check.phones) == (campaign.pk, cast.instance_a.pk, phones[2:])
    # Expanding again while the check is under way asks nothing twice.
    assert expansion.expand_chunk(campaign.pk).stopped == "checking"
    assert NumberCheck.objects.count() == 1

    # The gateway answers (the worker calls record): the expansion is queued again.
    dispatched["expansions"].clear()
    with django_capture_on_commit_callbacks(execute=True):
        numbers.record(check.pk, {phones[2]: True, phones[3]: False})
    assert dispatched["expansions"] == [campaign.pk]

    done = expansion.expand_chunk(campaign.pk)
    assert (done.created, done.queued, done.stopped) == (4, 2, "done")
    rows = dict(Message.objects.filter(campaign=campaign).values_list("to", "failure_reason"))
    assert rows == {phones[0]: "", phones[1]: "not_on_network", phones[2]: "", phones[3]: "not_on_network"}
    skipped = Message.objects.get(campaign=campaign, to=phones[1])
    assert (skipped.status, skipped.attempts) == ("failed", 0)
    assert "not on WhatsApp" in skipped.error
    figures = report(campaign, dt.datetime.now(dt.UTC))
    assert figures["skipped"] == {"total": 2, "by_reason": {"not_on_network": 2}}
    assert figures["failures"] == {"not_on_network": 2}


def test_a_check_the_gateway_cannot_answer_lets_the_numbers_go_unchecked(
    cast: Cast, dispatched: dict[str, list[int]], django_capture_on_commit_callbacks: Any
) -> None:
    campaign = running(cast, 3, check_numbers=True)
    assert expansion.expand_chunk(campaign.pk).stopped == "checking"
    check = NumberCheck.objects.get()
    dispatched["expansions"].clear()
    with django_capture_on_commit_callbacks(execute=True):
        numbers.fail(check.pk, "the gateway did not announce check")
    assert dispatched["expansions"] == [campaign.pk]
    assert expansion.expand_chunk(campaign.pk).queued == 3
    assert statuses(campaign) == {"queued": 3}


def test_a_campaign_without_the_check_asks_nothing(cast: Cast, dispatched: dict[str, list[int]]) -> None:
    campaign = running(cast, 3)
    assert expansion.expand_chunk(campaign.pk).queued == 3
    assert NumberCheck.objects.count() == 0


def test_every_message_of_a_media_campaign_carries_its_file_and_caption(
    cast: Cast, dispatched: dict[str, list[int]]
) -> None:
    media = Media.objects.create(tenant=cast.tenant_a, kind="image", mime="image/png", filename="sale.png", size=10)
    campaign = running(cast, 3, media=media, template="Sale for {{name}}")
    expansion.expand(campaign.pk)
    rows = list(Message.objects.filter(campaign=campaign).order_by("id").values_list("media_id", "text", "status"))
    assert rows == [(media.pk, f"Sale for N{i}", "queued") for i in range(3)]


def test_a_media_campaign_may_have_no_caption_but_not_one_over_1024_characters(
    cast: Cast, dispatched: dict[str, list[int]]
) -> None:
    media = Media.objects.create(tenant=cast.tenant_a, kind="image", mime="image/png", filename="sale.png", size=10)
    contact_list = make_list(cast.tenant_a, [(n, {"note": ""}) for n in phone_numbers(1)])
    silent = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="", media=media)
    assert lifecycle.readiness_problems(silent) == []
    long = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="x" * 1100, media=media, name="l")
    lifecycle.start(long.pk, "test")
    expansion.expand(long.pk)
    failed = Message.objects.get(campaign=long)
    assert (failed.failure_reason, failed.status) == ("invalid_text", "failed")
    assert "caption of 1100 characters" in failed.error


def test_the_api_takes_a_media_and_the_check_option(cast: Cast) -> None:
    media = Media.objects.create(tenant=cast.tenant_a, kind="image", mime="image/png", filename="sale.png", size=10)
    contact_list = make_list(cast.tenant_a, [(n, {}) for n in phone_numbers(1)])
    body = {
        "name": "photo blast",
        "template": "New in",
        "contact_list": str(contact_list.key),
        "instances": [str(cast.instance_a.key)],
        "media": str(media.key),
        "check_numbers": True,
    }
    created = cast.owner.post("/api/v1/campaigns", body, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["media"], created.json()["check_numbers"]) == (str(media.key), True)
    campaign = Campaign.objects.get(key=created.json()["id"])
    assert (campaign.media_id, campaign.check_numbers) == (media.pk, True)
    theirs = Media.objects.create(tenant=cast.tenant_b, kind="image", mime="image/png", filename="t.png", size=1)
    refused = cast.owner.post("/api/v1/campaigns", {**body, "media": str(theirs.key)}, format="json")
    assert refused.status_code == 400 and "No media with id" in refused.json()["media"][0]
    assert cast.owner.post("/api/v1/campaigns", {**body, "check_numbers": "yes"}, format="json").status_code == 400
