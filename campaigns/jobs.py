"""The campaign beat job (``campaigns.tick``), as small named steps.

Each step finds the campaigns it concerns with one query and changes each
through :mod:`campaigns.lifecycle`, which re-checks the campaign under its
row lock: a step that races with a tenant's action (or another beat) does
nothing twice and nothing wrong.

1. :func:`begin_due`: scheduled campaigns whose start time came start.
2. :func:`pause_disconnected`: running campaigns none of whose instances has
   been connected for ``BLAST_CAMPAIGN_PAUSE_GRACE_S`` pause (reason
   ``no_connected_instance``); :func:`resume_reconnected` resumes them once
   one is connected.
3. :func:`enforce_windows`: outside a running campaign's allowed hours (or
   within ``BLAST_CAMPAIGN_WINDOW_GUARD_S`` of a window's end) its queued
   messages get ``not_before`` = the next window's opening; when the window
   opens the instances are hinted.
4. :func:`complete_finished`: campaigns fully expanded with no queued message
   left complete.
5. :func:`redispatch_stalled`: running campaigns whose expansion made no
   progress for ``BLAST_CAMPAIGN_EXPANSION_STALL_S`` are dispatched again (a
   lost Celery message, a killed worker).
6. :func:`campaigns.reroute.sweep`: the unsent share of an instance that
   stopped moves to the campaign's connected instances; what cannot move
   fails with ``instance_stopped`` after the deadline. Before step 4 in
   :func:`tick`, so that a campaign completes on the beat its last
   messages fail.
7. :func:`campaigns.guard.guard`: a campaign with a reply-ratio guard whose
   recipients reply too little pauses, and its tenant is told.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import dispatch, guard, lifecycle, reroute
from campaigns.models import Campaign, CampaignStatus, Message, MessageStatus, PauseReason
from instances import hints
from instances.models import Status

logger = logging.getLogger("blast.campaigns")

Membership = Campaign.instances.through


def begin_due(now: dt.datetime) -> int:
    due = Campaign.objects.filter(status=CampaignStatus.SCHEDULED, start_at__lte=now).values_list("id", flat=True)
    return sum(lifecycle.begin_if_due(pk, now) for pk in list(due))


def _with_connected_instance(campaign_ids: list[int]) -> set[int]:
    return set(
        Membership.objects.filter(campaign_id__in=campaign_ids, instance__status=Status.CONNECTED).values_list(
            "campaign_id", flat=True
        )
    )


def pause_disconnected(now: dt.datetime) -> int:
    running = list(Campaign.objects.filter(status=CampaignStatus.RUNNING).values_list("id", flat=True))
    if not running:
        return 0
    grace = dt.timedelta(seconds=float(settings.BLAST_CAMPAIGN_PAUSE_GRACE_S))
    recently_changed = set(
        Membership.objects.filter(campaign_id__in=running, instance__status_changed_at__gt=now - grace).values_list(
            "campaign_id", flat=True
        )
    )
    stranded = set(running) - _with_connected_instance(running) - recently_changed
    message = "Paused by itself: none of its instances is connected. It resumes when one connects."
    return sum(lifecycle.auto_pause(pk, now, PauseReason.NO_CONNECTED_INSTANCE, message) for pk in sorted(stranded))


def resume_reconnected(now: dt.datetime) -> int:
    waiting = list(
        Campaign.objects.filter(
            status=CampaignStatus.PAUSED, pause_reason=PauseReason.NO_CONNECTED_INSTANCE
        ).values_list("id", flat=True)
    )
    if not waiting:
        return 0
    return sum(lifecycle.auto_resume(pk, now) for pk in sorted(_with_connected_instance(waiting)))


def enforce_windows(now: dt.datetime) -> int:
    """Hold or release the messages of running campaigns with allowed hours;
    returns how many campaigns changed side (window closed or opened)."""
    changed = 0
    for campaign in Campaign.objects.filter(status=CampaignStatus.RUNNING).only(
        "id", "allowed_start", "allowed_end", "allowed_weekdays", "time_zone", "window_opens_at"
    ):
        try:
            if lifecycle.hours_of(campaign).always and campaign.window_opens_at is None:
                continue
            hold = lifecycle.hold_time(campaign, now)
        except ValueError:
            logger.warning("⚠️ campaign %s has unusable allowed hours; not enforced", campaign.pk)
            continue
        with transaction.atomic():
            if hold is not None:
                Message.objects.filter(campaign_id=campaign.pk, status=MessageStatus.QUEUED).filter(
                    Q(not_before__isnull=True) | Q(not_before__lt=hold)
                ).update(not_before=hold)
                if campaign.window_opens_at != hold:
                    changed += 1
                    Campaign.objects.filter(pk=campaign.pk).update(
                        window_opens_at=hold,
                        status_message=f"Outside its allowed hours: sending resumes at {hold:%Y-%m-%d %H:%M} UTC.",
                        updated_at=now,
                    )
                    logger.info("🌙 campaign %s outside its allowed hours until %s", campaign.pk, hold.isoformat())
            elif campaign.window_opens_at is not None:
                changed += 1
                Campaign.objects.filter(pk=campaign.pk).update(
                    window_opens_at=None, status_message="Inside its allowed hours.", updated_at=now
                )
                ids = list(Membership.objects.filter(campaign_id=campaign.pk).values_list("instance_id", flat=True))
                transaction.on_commit(lambda ids=ids: hints.send(ids))  # type: ignore[misc]
                logger.info("☀️ campaign %s inside its allowed hours again", campaign.pk)
    return changed


def complete_finished(now: dt.datetime) -> int:
    candidates = Campaign.objects.filter(
        status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED], expanded_at__isnull=False
    ).values_list("id", flat=True)
    return sum(lifecycle.complete_if_finished(pk, now) for pk in list(candidates))


def redispatch_stalled(now: dt.datetime) -> int:
    stall = dt.timedelta(seconds=float(settings.BLAST_CAMPAIGN_EXPANSION_STALL_S))
    stalled = list(
        Campaign.objects.filter(status=CampaignStatus.RUNNING, expanded_at__isnull=True)
        .filter(Q(expansion_progress_at__isnull=True) | Q(expansion_progress_at__lt=now - stall))
        .values_list("id", flat=True)
    )
    for pk in stalled:
        dispatch.dispatch_expansion(pk)
    return len(stalled)


def tick(now: dt.datetime | None = None) -> dict[str, int]:
    """One run of every step; counts of what each did."""
    now = now or timezone.now()
    return {
        "started": begin_due(now),
        "paused": pause_disconnected(now),
        "resumed": resume_reconnected(now),
        "windows": enforce_windows(now),
        **{f"rerouted_{name}": n for name, n in reroute.sweep(now).items()},
        "low_replies": guard.guard(now),
        "completed": complete_finished(now),
        "expansions": redispatch_stalled(now),
    }
