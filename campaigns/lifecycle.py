"""What starting, pausing, resuming, cancelling and completing a campaign do.

Every transition locks the campaign row, checks the move against
:mod:`campaigns.states` and writes it with the messages it affects in one
transaction; hints and Celery dispatches go out after commit. Queued
messages carry the decision in ``not_before``, the one thing the worker
checks before sending:

- paused: :data:`~campaigns.models.HOLD` (never due) on every queued message
  (but for a pause for lack of quota, which only stops the expansion);
- resumed: the hold is lifted (``not_before`` = the next allowed-hours window
  if the window is closed now, else none) and the instances are hinted;
- cancelled: queued messages never attempted fail with reason ``cancelled``;
  those a worker already wrote to a gateway are left to it (they may have
  been delivered: the worker's resend with the same id learns the outcome).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns import dispatch, states
from campaigns.failures import fail_unsent
from campaigns.models import HOLD, Campaign, CampaignStatus, FailureReason, Message, MessageStatus, PauseReason
from campaigns.states import IllegalTransition
from campaigns.templating import TemplateError
from campaigns.templating import parse as parse_template
from instances import hints, schedule

logger = logging.getLogger("blast.campaigns")

CANCELLED_ERROR = "The campaign was cancelled before this message was sent."


class NotReady(IllegalTransition):
    """The campaign cannot start as it is; ``str()`` lists what is missing."""


def hours_of(campaign: Campaign) -> schedule.AllowedHours:
    return schedule.allowed_hours(
        campaign.allowed_start, campaign.allowed_end, campaign.time_zone or "UTC", campaign.allowed_weekdays or ()
    )


def hold_time(campaign: Campaign, now: dt.datetime) -> dt.datetime | None:
    """When the campaign's allowed hours let it send again, or None when it
    may send now (and for at least the guard)."""
    return schedule.hold_until(hours_of(campaign), now, float(settings.BLAST_CAMPAIGN_WINDOW_GUARD_S))


def readiness_problems(campaign: Campaign) -> list[str]:
    """Why the campaign cannot start; empty when it can."""
    problems: list[str] = []
    if not campaign.template.strip() and campaign.media_id is None:
        problems.append("it has no template (nor media)")
    if campaign.contact_list_id is None:
        problems.append("it has no contact list")
    if not campaign.instances.exists():
        problems.append("it has no instance to send through")
    if campaign.template.strip() and campaign.contact_list_id is not None:
        try:
            parse_template(campaign.template).check_fields(campaign.contact_list.fields or [])  # type: ignore[union-attr]
        except TemplateError as exc:
            problems.append(f"its template is not usable: {exc}")
    if campaign.contact_list_id is not None and not campaign.contact_list.contacts.exists():  # type: ignore[union-attr]
        problems.append("its contact list is empty")
    try:
        hours_of(campaign)
    except schedule.ScheduleError as exc:
        problems.append(f"its allowed hours are not usable: {exc}")
    if (campaign.send_delay_min_s or 0) > (campaign.send_delay_max_s or 0) and campaign.send_delay_max_s is not None:
        problems.append("its minimum delay is greater than its maximum delay")
    return problems


def _locked(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def _instance_ids(campaign_id: int) -> list[int]:
    return list(
        Campaign.instances.through.objects.filter(campaign_id=campaign_id).values_list("instance_id", flat=True)
    )


def _after_commit(action: Callable[[], object]) -> None:
    transaction.on_commit(action)


def dispatch_expansion_after_commit(campaign_id: int) -> None:
    _after_commit(lambda: dispatch.dispatch_expansion(campaign_id))


def hint_after_commit(instance_ids: list[int]) -> None:
    if instance_ids:
        _after_commit(lambda: hints.send(instance_ids))


def _save(campaign: Campaign, now: dt.datetime, *fields: str) -> None:
    campaign.updated_at = now
    campaign.save(update_fields=[*fields, "updated_at"])


def hold_messages(campaign_id: int) -> int:
    """Make every queued message of the campaign never due (paused)."""
    return Message.objects.filter(campaign_id=campaign_id, status=MessageStatus.QUEUED).update(not_before=HOLD)


def release_messages(campaign: Campaign, now: dt.datetime) -> int:
    """Lift the pause hold: due now, or at the next window when it is closed."""
    window = hold_time(campaign, now)
    return Message.objects.filter(campaign_id=campaign.pk, status=MessageStatus.QUEUED, not_before=HOLD).update(
        not_before=window
    )


# -- the tenant's actions -----------------------------------------------------------


def start(campaign_id: int, actor: str = "", now: dt.datetime | None = None) -> Campaign:
    """draft -> running (or scheduled, when its start time is ahead)."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        scheduled = campaign.start_at is not None and campaign.start_at > now
        new = states.after(campaign.status, "start", scheduled=scheduled)
        problems = readiness_problems(campaign)
        if problems:
            raise NotReady("The campaign cannot start: " + "; ".join(problems) + ".")
        campaign.status = new
        campaign.pause_reason = ""
        if new == CampaignStatus.SCHEDULED:
            campaign.scheduled_at = now
            campaign.status_message = (
                f"Scheduled by {actor or 'someone'} to start at {campaign.start_at:%Y-%m-%d %H:%M} UTC."
            )
            _save(campaign, now, "status", "pause_reason", "scheduled_at", "status_message")
        else:
            _begin(campaign, now, f"Started by {actor or 'someone'}.")
    logger.info("▶️ campaign %s %s by %s", campaign.pk, campaign.status, actor or "?")
    return campaign


def _begin(campaign: Campaign, now: dt.datetime, message: str) -> None:
    campaign.status = CampaignStatus.RUNNING
    campaign.started_at = now
    campaign.expansion_progress_at = now
    campaign.status_message = message
    _save(campaign, now, "status", "pause_reason", "started_at", "expansion_progress_at", "status_message")
    dispatch_expansion_after_commit(campaign.pk)


def pause(campaign_id: int, actor: str = "", now: dt.datetime | None = None) -> Campaign:
    """running -> paused: nothing more of it is sent until it resumes. A
    campaign that paused by itself becomes paused by the tenant (it will not
    resume by itself any more)."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status == CampaignStatus.PAUSED and campaign.pause_reason != PauseReason.MANUAL:
            # Paused by itself: from now on only the tenant resumes it.
            mark_paused(campaign, now, PauseReason.MANUAL, f"Paused by {actor or 'someone'}.")
            return campaign
        campaign.status = states.after(campaign.status, "pause")
        mark_paused(campaign, now, PauseReason.MANUAL, f"Paused by {actor or 'someone'}.")
    return campaign


def mark_paused(campaign: Campaign, now: dt.datetime, reason: str, message: str) -> None:
    """Write the pause of a campaign whose row the caller holds locked.

    Paused for lack of quota, its queued messages (created within the quota)
    still go out and only the expansion stops; any other pause holds them.
    """
    campaign.status = CampaignStatus.PAUSED
    campaign.pause_reason = reason
    campaign.paused_at = now
    campaign.status_message = message[:300]
    _save(campaign, now, "status", "pause_reason", "paused_at", "status_message")
    held = hold_messages(campaign.pk) if reason != PauseReason.QUOTA_EXCEEDED else 0
    logger.info("⏸️ campaign %s paused (%s): %d messages held", campaign.pk, reason, held)


def resume(campaign_id: int, actor: str = "", now: dt.datetime | None = None, automatic: bool = False) -> Campaign:
    """paused -> running: held messages are released and sent again."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        campaign.status = states.after(campaign.status, "auto_resume" if automatic else "resume")
        message = "Resumed: an instance is connected again." if automatic else f"Resumed by {actor or 'someone'}."
        _resumed(campaign, now, message)
    return campaign


def _resumed(campaign: Campaign, now: dt.datetime, message: str) -> None:
    campaign.status = CampaignStatus.RUNNING
    campaign.pause_reason = ""
    campaign.status_message = message[:300]
    campaign.expansion_progress_at = now
    _save(campaign, now, "status", "pause_reason", "status_message", "expansion_progress_at")
    released = release_messages(campaign, now)
    hint_after_commit(_instance_ids(campaign.pk))
    if campaign.expanded_at is None:
        dispatch_expansion_after_commit(campaign.pk)
    logger.info("▶️ campaign %s resumed: %d messages released", campaign.pk, released)


def cancel(campaign_id: int, actor: str = "", now: dt.datetime | None = None) -> Campaign:
    """Any status but completed/cancelled -> cancelled, for good."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = _locked(campaign_id)
        campaign.status = states.after(campaign.status, "cancel")
        campaign.cancelled_at = now
        campaign.pause_reason = ""
        campaign.status_message = f"Cancelled by {actor or 'someone'}."
        _save(campaign, now, "status", "cancelled_at", "pause_reason", "status_message")
        failed = fail_unsent(
            Message.objects.filter(campaign_id=campaign.pk), FailureReason.CANCELLED, CANCELLED_ERROR, now
        )
        # Messages already attempted are finished by their worker (see module doc).
        Message.objects.filter(campaign_id=campaign.pk, status=MessageStatus.QUEUED, not_before=HOLD).update(
            not_before=None
        )
    logger.info("⏹️ campaign %s cancelled by %s: %d messages failed unsent", campaign.pk, actor or "?", len(failed))
    return campaign


# -- what the beat job does by itself ---------------------------------------------


def begin_if_due(campaign_id: int, now: dt.datetime) -> bool:
    """scheduled -> running once its start time has come."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status != CampaignStatus.SCHEDULED or (campaign.start_at and campaign.start_at > now):
            return False
        _begin(campaign, now, "Started at its start time.")
    logger.info("▶️ campaign %s started at its start time", campaign_id)
    return True


def auto_pause(campaign_id: int, now: dt.datetime, reason: str, message: str) -> bool:
    """running -> paused for ``reason``; False when it is not running any more."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status != CampaignStatus.RUNNING:
            return False
        mark_paused(campaign, now, reason, message)
    return True


def auto_resume(campaign_id: int, now: dt.datetime) -> bool:
    """paused (no instance connected) -> running, once one is."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status != CampaignStatus.PAUSED or campaign.pause_reason != PauseReason.NO_CONNECTED_INSTANCE:
            return False
        _resumed(campaign, now, "Resumed: an instance is connected again.")
    return True


def complete_if_finished(campaign_id: int, now: dt.datetime) -> bool:
    """running/paused -> completed when every contact has its message and
    none is queued any more."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED) or campaign.expanded_at is None:
            return False
        if Message.objects.filter(campaign_id=campaign.pk, status=MessageStatus.QUEUED).exists():
            return False
        campaign.status = CampaignStatus.COMPLETED
        campaign.completed_at = now
        campaign.pause_reason = ""
        campaign.status_message = "Every message reached a final status."
        _save(campaign, now, "status", "completed_at", "pause_reason", "status_message")
    logger.info("🏁 campaign %s completed", campaign_id)
    return True
