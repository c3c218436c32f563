"""Campaigns finish when an instance of their rotation stops: its share moves.

A campaign's messages are dealt to instances when they are created
(campaigns.expansion). An instance that stops for good (logged out, replaced,
forbidden, halted, disconnected by an operator), stays unable to send for
``BLAST_CAMPAIGN_REROUTE_AFTER_S`` (breaker open, temporarily banned,
backing off, disconnected) or has its sending paused for limits
(instances.restrictions) would keep its share queued for ever, or for the
pause. A slowed-down instance takes no share while a full-speed one can. The beat
job's :func:`reroute` moves that share, oldest first, round robin over the
rotation's connected instances, so each keeps its order in its new queue and
is paced there like the rest.

Only messages the old instance never sent move: never written to a gateway,
or every write of which the gateway answered with a transient nack (it did
not send it: docs/PROTOCOL.md 2.5), that is ``attempts`` equal to
``nacks``. The move is one conditional UPDATE per message set (``instance``
still the old one, ``attempts`` still ``nacks``), and the worker's claim
names the instance it sends from and counts the attempt
(engine.outbox.claim_many): whichever comes first wins, so a message is sent
through one instance, never two. A message with a write still unanswered
stays with its instance: it may have gone out.

With no connected instance left the share waits. :func:`fail_stranded` fails
what is left on a stopped instance with ``instance_stopped`` once the
campaign's ``deadline`` has passed (or, without one,
``BLAST_CAMPAIGN_STRANDED_FAIL_H`` after the instance stopped), so that a
campaign always reaches completed or cancelled.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from campaigns import lifecycle
from campaigns.failures import fail_unsent
from campaigns.models import Campaign, CampaignStatus, FailureReason, Message, MessageStatus
from instances.models import TERMINAL_STATUSES, Instance, Status

logger = logging.getLogger("blast.campaigns")

Membership = Campaign.instances.through
STRANDED_ERROR = "Its instance stopped and no other instance of the campaign could send it before the deadline."


@dataclass(frozen=True)
class Rotation:
    """A campaign's instances as :func:`rotation` sorts them."""

    stopped: set[int]  # terminal, or not connected for BLAST_CAMPAIGN_REROUTE_AFTER_S
    paused: set[int]  # connected, its sending paused for limits (instances.restrictions)
    targets: set[int]  # connected at full speed; when every connected one is slowed down, the slowed ones


def rotation(instance_ids: list[int], now: dt.datetime) -> Rotation:
    """Sort ``instance_ids``: the stopped and the paused hand their share to
    the targets; only the stopped ones' share fails when it is stranded (a
    paused instance sends again after the pause)."""
    after = dt.timedelta(seconds=float(settings.BLAST_CAMPAIGN_REROUTE_AFTER_S))
    stopped: set[int] = set()
    paused: set[int] = set()
    fast: set[int] = set()
    slowed: set[int] = set()
    rows = Instance.objects.filter(pk__in=instance_ids).values_list(
        "pk", "status", "status_changed_at", "paused_until", "slowed_until"
    )
    for pk, status, changed_at, paused_until, slowed_until in rows:
        if status == Status.CONNECTED:
            if paused_until is not None and paused_until > now:
                paused.add(pk)
            elif slowed_until is not None and slowed_until > now:
                slowed.add(pk)
            else:
                fast.add(pk)
        elif status in TERMINAL_STATUSES or changed_at <= now - after:
            stopped.add(pk)
    return Rotation(stopped, paused, fast or slowed)


def reroute(campaign_id: int, now: dt.datetime) -> int:
    """Move the unsent queued messages of ``campaign_id`` off its stopped
    instances onto its connected ones; how many moved."""
    members = list(Membership.objects.filter(campaign_id=campaign_id).values_list("instance_id", flat=True))
    found = rotation(members, now)
    stopped, connected = found.stopped | found.paused, found.targets
    if not stopped or not connected:
        return 0
    stranded = list(
        Message.objects.filter(
            campaign_id=campaign_id, instance_id__in=stopped, status=MessageStatus.QUEUED, attempts=F("nacks")
        )
        .order_by("id")
        .values_list("id", "instance_id")
    )
    if not stranded:
        return 0
    targets = sorted(connected)
    by_move: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n, (message_id, old) in enumerate(stranded):
        by_move[(old, targets[n % len(targets)])].append(message_id)
    moved = 0
    with transaction.atomic():
        for (old, new), ids in by_move.items():
            moved += Message.objects.filter(
                id__in=ids, instance_id=old, status=MessageStatus.QUEUED, attempts=F("nacks")
            ).update(instance_id=new, moved_from_id=old)
        lifecycle.hint_after_commit(targets)
    if moved:
        logger.info("🔀 campaign %s: %d messages moved off stopped instances %s", campaign_id, moved, sorted(stopped))
    return moved


def fail_stranded(campaign: Campaign, now: dt.datetime) -> int:
    """Fail what is left queued on the campaign's stopped instances once its
    deadline (or the stranded grace after the instance stopped) has passed."""
    members = list(Membership.objects.filter(campaign_id=campaign.pk).values_list("instance_id", flat=True))
    stopped = rotation(members, now).stopped
    if not stopped:
        return 0
    if campaign.deadline is not None:
        if campaign.deadline > now:
            return 0
        due = Q(instance_id__in=stopped)
    else:
        grace = dt.timedelta(hours=float(settings.BLAST_CAMPAIGN_STRANDED_FAIL_H))
        due = Q(instance_id__in=stopped, instance__status_changed_at__lte=now - grace)
    failed = fail_unsent(
        Message.objects.filter(due, campaign_id=campaign.pk),
        FailureReason.INSTANCE_STOPPED,
        STRANDED_ERROR,
        now,
        attempted=True,
    )
    if failed:
        logger.warning("⛔ campaign %s: %d messages failed, their instances stopped", campaign.pk, len(failed))
    return len(failed)


def sweep(now: dt.datetime) -> dict[str, int]:
    """The beat job's step: every running or paused campaign, moved then failed."""
    moved = failed = 0
    for campaign in Campaign.objects.filter(status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED]).only(
        "id", "status", "deadline"
    ):
        if campaign.status == CampaignStatus.RUNNING:
            moved += reroute(campaign.pk, now)
        failed += fail_stranded(campaign, now)
    return {"moved": moved, "failed": failed}
