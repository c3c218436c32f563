"""The reply-ratio guard: a campaign nobody answers is paused before it
costs the number.

Recipients who never reply to a blast (and block or report it instead) are
what the network judges a sender by. A campaign with ``reply_guard_percent``
is judged once ``reply_guard_after`` of its messages were sent: when fewer
of the recipients sent to have replied (campaigns.inbound links replies) it
pauses with reason ``low_reply_rate`` and a ``campaign_low_replies`` alert
goes to the tenant's alert webhooks (and the platform's). It trips once: a
campaign the tenant resumes is not paused again for it.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Count

from campaigns import lifecycle
from campaigns.models import Campaign, CampaignStatus, InboundMessage, Message, PauseReason

logger = logging.getLogger("blast.campaigns")


def reply_rate(campaign_id: int) -> tuple[int, float | None]:
    """(messages sent, percent of the recipients sent to who replied)."""
    sent = Message.objects.filter(campaign_id=campaign_id, sent_at__isnull=False)
    recipients = sent.values("to").distinct().count()
    if not recipients:
        return 0, None
    replied = InboundMessage.objects.filter(campaign_id=campaign_id).aggregate(n=Count("sender", distinct=True))["n"]
    return sent.count(), 100.0 * replied / recipients


def guard(now: dt.datetime) -> int:
    """Pause every running campaign its guard judges; how many paused."""
    paused = 0
    for campaign in Campaign.objects.filter(
        status=CampaignStatus.RUNNING, reply_guard_percent__isnull=False, reply_guard_tripped_at__isnull=True
    ).only("id", "tenant_id", "key", "name", "reply_guard_percent", "reply_guard_after"):
        sent, rate = reply_rate(campaign.pk)
        threshold = float(campaign.reply_guard_percent or 0.0)
        if rate is None or sent < campaign.reply_guard_after or rate >= threshold:
            continue
        message = (
            f"Paused by its reply guard: {rate:.1f} % of the recipients replied after {sent} messages "
            f"(below {threshold:g} %). Check the message and the list, then resume it."
        )
        with transaction.atomic():
            if not lifecycle.auto_pause(campaign.pk, now, PauseReason.LOW_REPLY_RATE, message):
                continue
            Campaign.objects.filter(pk=campaign.pk).update(reply_guard_tripped_at=now)
            _tell_the_tenant(campaign, message, sent, rate, now)
        logger.warning("📉 campaign %s paused: reply rate %.1f %% after %d sends", campaign.pk, rate, sent)
        paused += 1
    return paused


def _tell_the_tenant(campaign: Campaign, message: str, sent: int, rate: float, now: dt.datetime) -> None:
    from monitoring import alerts, tasks

    _alert, ids = alerts.raise_alert(
        "campaign_low_replies",
        "firing",
        f"Campaign {campaign.name!r}: {message}",
        {"campaign": str(campaign.key), "sent": sent, "reply_rate_percent": round(rate, 1)},
        now=now,
        tenant_id=campaign.tenant_id,
    )
    if ids:
        transaction.on_commit(lambda: tasks.dispatch(ids))
