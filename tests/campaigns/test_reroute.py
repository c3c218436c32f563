"""Campaigns finish when an instance of their rotation stops.

The unsent share of a stopped instance (terminal, or not connected for
BLAST_CAMPAIGN_REROUTE_AFTER_S) moves to the campaign's connected instances
in order; a message written to a gateway stays unless every write was
nacked for now (it was not sent); the worker's claim
names its instance, so a moved message is claimed by one instance only.
With nobody connected the share waits, and fails with instance_stopped
after the deadline: the campaign completes. The beat job's steps are called
as functions; the real worker and simulator are bench/campaign_health.py's
and test_reroute_end_to_end.py's.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from campaigns import expansion, jobs, lifecycle, reroute
from campaigns.models import Campaign, Message, MessageStatus
from campaigns.reports import report
from engine import outbox
from instances.models import Instance, Status
from tests.campaigns.conftest import make_campaign, make_list, numbers
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

NOW = dt.datetime.now(dt.UTC)


def set_status(instance: Instance, status: str, ago_s: float = 0.0) -> None:
    Instance.objects.filter(pk=instance.pk).update(status=status, status_changed_at=NOW - dt.timedelta(seconds=ago_s))


def campaign_with_messages(cast: Cast, on_stopped: int = 4, on_live: int = 2, **fields: Any) -> Campaign:
    """A running campaign over instance_a (connected) and instance_a2, whose
    queued messages are dealt ``on_live`` to the first and ``on_stopped`` to
    the second."""
    phones = numbers(on_stopped + on_live)
    contact_list = make_list(cast.tenant_a, [(p, {}) for p in phones])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a, cast.instance_a2], **fields)
    Campaign.objects.filter(pk=campaign.pk).update(status="running", expanded_at=NOW)
    for n, phone in enumerate(phones):
        instance = cast.instance_a2 if n < on_stopped else cast.instance_a
        Message.objects.create(tenant=cast.tenant_a, instance=instance, campaign=campaign, to=phone, text="hi")
    set_status(cast.instance_a, Status.CONNECTED)
    campaign.refresh_from_db()
    return campaign


def share(instance: Instance, campaign: Campaign) -> list[str]:
    return list(
        Message.objects.filter(campaign=campaign, instance=instance, status="queued")
        .order_by("id")
        .values_list("to", flat=True)
    )


@pytest.mark.parametrize("status", [Status.LOGGED_OUT, Status.REPLACED, Status.FORBIDDEN, Status.HALTED])
def test_the_share_of_an_instance_stopped_for_good_moves_in_order(cast: Cast, status: str) -> None:
    campaign = campaign_with_messages(cast)
    stranded = share(cast.instance_a2, campaign)
    set_status(cast.instance_a2, status)
    assert reroute.sweep(NOW) == {"moved": 4, "failed": 0}
    assert share(cast.instance_a2, campaign) == []
    # The live instance's queue holds the whole campaign in its order (ids).
    assert share(cast.instance_a, campaign) == numbers(6)
    assert stranded == numbers(4)
    assert set(Message.objects.filter(to__in=stranded).values_list("moved_from_id", flat=True)) == {cast.instance_a2.pk}
    assert reroute.sweep(NOW) == {"moved": 0, "failed": 0}  # nothing twice


@pytest.mark.parametrize("status", [Status.CIRCUIT_OPEN, Status.BACKING_OFF, Status.DISCONNECTED])
def test_an_instance_down_for_a_while_hands_its_share_over_only_after_the_setting(
    cast: Cast, status: str, settings: Any
) -> None:
    settings.BLAST_CAMPAIGN_REROUTE_AFTER_S = 300
    campaign_with_messages(cast)
    set_status(cast.instance_a2, status, ago_s=299)
    assert reroute.sweep(NOW)["moved"] == 0
    set_status(cast.instance_a2, status, ago_s=301)
    assert reroute.sweep(NOW)["moved"] == 4


def test_a_message_already_written_to_the_stopped_gateway_stays(cast: Cast) -> None:
    campaign_with_messages(cast)
    written = Message.objects.filter(instance=cast.instance_a2).order_by("id").first()
    assert written is not None
    Message.objects.filter(pk=written.pk).update(attempts=1)
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 3
    assert Message.objects.get(pk=written.pk).instance_id == cast.instance_a2.pk


def test_a_moved_message_is_claimed_by_one_instance_only(cast: Cast) -> None:
    campaign = campaign_with_messages(cast, on_stopped=2, on_live=0)
    first, second = Message.objects.filter(campaign=campaign).order_by("id")
    # The stopped instance's worker claims one before the move: it stays there.
    assert outbox.claim(cast.instance_a2.pk, [first.pk], time.time()) == [first.pk]
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 1
    # A claim that comes after the move, from the old instance, gets nothing;
    # the new instance's claim gets it.
    assert outbox.claim(cast.instance_a2.pk, [second.pk], time.time()) == []
    assert outbox.claim(cast.instance_a.pk, [second.pk], time.time()) == [second.pk]
    assert Message.objects.get(pk=second.pk).attempts == 1


def test_with_nobody_connected_the_share_waits_then_fails_at_the_deadline_and_the_campaign_completes(
    cast: Cast,
) -> None:
    campaign = campaign_with_messages(cast, on_stopped=3, on_live=0, deadline=NOW + dt.timedelta(hours=1))
    set_status(cast.instance_a, Status.CIRCUIT_OPEN)
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW) == {"moved": 0, "failed": 0}
    assert jobs.complete_finished(NOW) == 0
    later = NOW + dt.timedelta(hours=1, seconds=1)
    counts = jobs.tick(later)
    assert counts["rerouted_failed"] == 3 and counts["completed"] == 1
    failed = Message.objects.filter(campaign=campaign)
    assert set(failed.values_list("status", "failure_reason")) == {("failed", "instance_stopped")}
    assert Campaign.objects.get(pk=campaign.pk).status == "completed"


def test_without_a_deadline_stranded_messages_fail_after_the_grace(cast: Cast, settings: Any) -> None:
    settings.BLAST_CAMPAIGN_STRANDED_FAIL_H = 24
    campaign = campaign_with_messages(cast, on_stopped=2, on_live=0)
    set_status(cast.instance_a, Status.LOGGED_OUT)
    set_status(cast.instance_a2, Status.LOGGED_OUT, ago_s=23 * 3600)
    assert reroute.sweep(NOW)["failed"] == 0
    set_status(cast.instance_a2, Status.LOGGED_OUT, ago_s=24 * 3600 + 1)
    assert reroute.sweep(NOW)["failed"] == 2
    assert not Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED).exists()


def test_a_paused_campaign_moves_nothing(cast: Cast) -> None:
    campaign = campaign_with_messages(cast)
    Campaign.objects.filter(pk=campaign.pk).update(status="paused")
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 0


def test_the_report_shows_each_instances_share_and_what_moved(cast: Cast) -> None:
    campaign = campaign_with_messages(cast)
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    reroute.sweep(NOW)
    rows = {row["name"]: row for row in report(campaign, NOW)["instances"]}
    assert rows["sales"] | {"instance": ""} == {
        "instance": "",
        "name": "sales",
        "status": "connected",
        "queued": 6,
        "sent": 0,
        "failed": 0,
        "moved_in": 4,
        "moved_out": 0,
    }
    assert (rows["support"]["status"], rows["support"]["queued"], rows["support"]["moved_out"]) == (
        "logged_out",
        0,
        4,
    )


def test_new_messages_are_not_dealt_to_an_instance_stopped_for_good(
    cast: Cast, dispatched: dict[str, list[int]]
) -> None:
    contact_list = make_list(cast.tenant_a, [(p, {"name": "x"}) for p in numbers(4)])
    campaign = make_campaign(cast.tenant_a, contact_list, [cast.instance_a, cast.instance_a2])
    set_status(cast.instance_a, Status.BACKING_OFF)
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    lifecycle.start(campaign.pk, "test")

    expansion.expand(campaign.pk)
    assert set(Message.objects.filter(campaign=campaign).values_list("instance_id", flat=True)) == {cast.instance_a.pk}


# --- the reply-ratio guard ------------------------------------------------------------------


def test_a_campaign_nobody_answers_pauses_once_and_the_tenant_is_told(cast: Cast) -> None:
    from campaigns import guard
    from campaigns.inbound import handle_inbound
    from monitoring.models import Alert, AlertWebhook

    AlertWebhook.objects.create(tenant=cast.tenant_a, name="ops", url="https://hooks.example.com/a")
    campaign = campaign_with_messages(cast, on_stopped=0, on_live=10, reply_guard_percent=20, reply_guard_after=8)
    rows = list(Message.objects.filter(campaign=campaign).order_by("id"))
    Message.objects.filter(pk__in=[m.pk for m in rows[:7]]).update(status="sent", sent_at=NOW)
    assert guard.guard(NOW) == 0  # 7 sent: not judged yet
    Message.objects.filter(pk=rows[7].pk).update(status="sent", sent_at=NOW)
    handle_inbound(cast.instance_a.pk, "r-1", rows[0].to, "thanks!")  # 1 of 8 replied: 12.5 %
    assert guard.guard(NOW) == 1
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "low_reply_rate")
    assert "12.5 % of the recipients replied after 8 messages" in campaign.status_message
    alert = Alert.objects.get(kind="campaign_low_replies")
    assert alert.tenant_id == cast.tenant_a.pk and alert.data["campaign"] == str(campaign.key)
    assert alert.deliveries.count() == 1
    # Resumed by the tenant, it is not paused again for the same reason.
    lifecycle.resume(campaign.pk, "owner")
    assert guard.guard(NOW) == 0
    assert Campaign.objects.get(pk=campaign.pk).status == "running"


def test_a_campaign_whose_recipients_answer_goes_on(cast: Cast) -> None:
    from campaigns import guard
    from campaigns.inbound import handle_inbound

    campaign = campaign_with_messages(cast, on_stopped=0, on_live=4, reply_guard_percent=20, reply_guard_after=4)
    rows = list(Message.objects.filter(campaign=campaign))
    Message.objects.filter(campaign=campaign).update(status="sent", sent_at=NOW)
    handle_inbound(cast.instance_a.pk, "r-1", rows[0].to, "yes please")
    assert guard.guard(NOW) == 0  # 25 %
    assert Campaign.objects.get(pk=campaign.pk).status == "running"


def test_a_paused_instance_hands_its_share_over_and_a_slowed_one_takes_none(cast: Cast) -> None:
    campaign = campaign_with_messages(cast, on_stopped=4, on_live=0)
    third = Instance.objects.create(tenant=cast.tenant_a, name="backup", gateway=cast.gateway)
    campaign.instances.add(third)
    set_status(cast.instance_a2, Status.CONNECTED)
    set_status(third, Status.CONNECTED)
    later = NOW + dt.timedelta(hours=1)
    Instance.objects.filter(pk=cast.instance_a2.pk).update(paused_until=later)  # paused for limits
    Instance.objects.filter(pk=third.pk).update(slowed_until=later)  # slowed down
    assert reroute.sweep(NOW) == {"moved": 4, "failed": 0}
    assert len(share(cast.instance_a, campaign)) == 4 and share(third, campaign) == []
    # A paused instance's claimed messages are not failed as stranded: it sends again after the pause.
    assert reroute.sweep(NOW + dt.timedelta(days=2))["failed"] == 0


def test_claims_never_written_are_taken_back_so_that_they_may_move(cast: Cast) -> None:
    campaign = campaign_with_messages(cast, on_stopped=3, on_live=0)
    ids = list(Message.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    assert outbox.claim(cast.instance_a2.pk, ids, time.time()) == ids
    assert outbox.unclaim(cast.instance_a2.pk, ids[1:]) == 2
    assert outbox.unclaim(cast.instance_a.pk, ids[:1]) == 0  # another instance's claim: untouched
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 2


def test_a_message_every_write_of_which_was_nacked_moves_and_one_with_a_write_unanswered_stays(cast: Cast) -> None:
    campaign = campaign_with_messages(cast, on_stopped=2, on_live=0)
    nacked, pending = Message.objects.filter(campaign=campaign).order_by("id")
    ids = [nacked.pk, pending.pk]
    assert outbox.claim(cast.instance_a2.pk, ids, time.time()) == ids
    # The gateway refuses the first for now (it did not send it); the second's
    # write is never answered: it may have gone out.
    outcomes = outbox.Outcomes(nacks={nacked.key.hex: (False, "rate_limited", 0.0, time.time())})
    outbox.apply(outcomes, default_nack_retry_s=0.0)
    assert Message.objects.get(pk=nacked.pk).nacks == 1
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 1
    assert Message.objects.get(pk=nacked.pk).instance_id == cast.instance_a.pk
    assert Message.objects.get(pk=pending.pk).instance_id == cast.instance_a2.pk


def test_a_nacked_message_written_again_stays_until_that_write_is_answered(cast: Cast) -> None:
    campaign = campaign_with_messages(cast, on_stopped=1, on_live=0)
    message = Message.objects.get(campaign=campaign)
    key = message.key.hex
    assert outbox.claim(cast.instance_a2.pk, [message.pk], time.time()) == [message.pk]
    outbox.apply(outbox.Outcomes(nacks={key: (False, "rate_limited", 0.0, time.time())}), 0.0)
    # Sent again: two writes, one nack.
    assert outbox.claim(cast.instance_a2.pk, [message.pk], time.time() + 1) == [message.pk]
    set_status(cast.instance_a2, Status.LOGGED_OUT)
    assert reroute.sweep(NOW)["moved"] == 0
    outbox.apply(outbox.Outcomes(nacks={key: (False, "rate_limited", 0.0, time.time() + 2)}), 0.0)
    assert reroute.sweep(NOW)["moved"] == 1
