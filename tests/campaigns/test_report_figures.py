"""The throughput figures of a campaign's report agree with each other and
with what docs/CAMPAIGNS.md says they are: sends per minute over a window
that ends now (at the last send once the campaign is over), never starts
before the first send and never lasts less than a minute."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine

from campaigns import reports
from campaigns.models import Campaign, CampaignStatus, Contact, Message, MessageStatus
from tests.campaigns.conftest import URLS, make_campaign, make_list, numbers
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db]

T0 = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def campaign_with_sends(cast: Cast, offsets_s: list[float], status: str, unsent: int = 0) -> Campaign:
    """A campaign of ``len(offsets_s) + unsent`` contacts whose messages were
    sent ``offsets_s`` seconds after T0 (the others still queued)."""
    contact_list = make_list(cast.tenant_a, [(n, {}) for n in numbers(len(offsets_s) + unsent)])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a], template="Hi", status=status)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=T0, expanded_at=T0)
    campaign.refresh_from_db()
    for index, contact in enumerate(Contact.objects.filter(contact_list=contact_list).order_by("id")):
        sent = index < len(offsets_s)
        Message.objects.create(
            tenant=cast.tenant_a,
            instance=cast.instance_a,
            campaign=campaign,
            contact=contact,
            to=contact.phone,
            text="Hi",
            status=MessageStatus.DELIVERED if sent else MessageStatus.QUEUED,
            sent_at=T0 + dt.timedelta(seconds=offsets_s[index]) if sent else None,
        )
    return campaign


def throughput(campaign: Campaign, after_s: float) -> dict[str, Any]:
    return reports.report(campaign, T0 + dt.timedelta(seconds=after_s))["throughput"]


def test_a_tiny_campaign_sent_within_a_second_reads_two_per_minute_on_both_figures(cast: Cast) -> None:
    campaign = campaign_with_sends(cast, [0.0, 0.4], CampaignStatus.COMPLETED)
    for after_s in (1.0, 180.0, 1800.0):
        figures = throughput(campaign, after_s)
        assert figures["sent"] == 2
        assert figures["per_minute_overall"] == 2.0
        assert figures["per_minute_last_10_min"] == 2.0
        assert figures["estimated_completion_at"] is None


def test_two_sends_at_the_same_instant_are_a_rate_not_a_missing_figure(cast: Cast) -> None:
    campaign = campaign_with_sends(cast, [0.0, 0.0], CampaignStatus.COMPLETED)
    figures = throughput(campaign, 5.0)
    assert (figures["per_minute_overall"], figures["per_minute_last_10_min"]) == (2.0, 2.0)


def test_a_running_campaign_whose_sends_are_all_recent_has_one_rate(cast: Cast) -> None:
    campaign = campaign_with_sends(cast, [0.0, 60.0, 120.0], CampaignStatus.RUNNING, unsent=3)
    figures = throughput(campaign, 300.0)  # 3 sends in the 5 minutes since the first
    assert figures["per_minute_overall"] == 0.6
    assert figures["per_minute_last_10_min"] == 0.6
    assert figures["estimated_completion_at"] == T0 + dt.timedelta(seconds=300) + dt.timedelta(minutes=3 / 0.6)


def test_the_last_10_minutes_count_only_their_own_sends(cast: Cast) -> None:
    # 10 sends in the first minute, then 5 in the last 10 minutes of an hour.
    offsets = [6.0 * i for i in range(10)] + [3000.0 + 60.0 * i for i in range(5)]
    campaign = campaign_with_sends(cast, offsets, CampaignStatus.RUNNING, unsent=5)
    figures = throughput(campaign, 3600.0)
    assert figures["per_minute_overall"] == 0.25  # 15 sends in 60 minutes
    assert figures["per_minute_last_10_min"] == 0.5  # 5 sends in 10 minutes
    assert figures["sent_last_hour"] == 15


def test_a_paused_campaign_sends_nothing_in_its_last_10_minutes(cast: Cast) -> None:
    campaign = campaign_with_sends(cast, [0.0, 30.0], CampaignStatus.PAUSED, unsent=2)
    figures = throughput(campaign, 3600.0)
    assert figures["per_minute_last_10_min"] == 0.0
    assert figures["per_minute_overall"] == round(2 / 60, 2)
    assert figures["estimated_completion_at"] is None


@pytest.mark.urls(URLS)
def test_the_api_reports_the_same_figures(cast: Cast) -> None:
    campaign = campaign_with_sends(cast, [0.0, 0.4], CampaignStatus.COMPLETED)
    with time_machine.travel(T0 + dt.timedelta(minutes=2), tick=False):
        figures = cast.owner.get(f"/api/v1/campaigns/{campaign.key}/report").json()["throughput"]
    assert figures["per_minute_overall"] == figures["per_minute_last_10_min"] == 2.0
