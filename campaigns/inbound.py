"""Inbound messages from recipients, and the stop keywords in them.

The connection worker calls :func:`handle_inbound` (synchronous ORM, through
``database_sync_to_async``) for every ``inbound`` frame. It stores the
message once per ``(instance, server_id)``: a frame seen again (a gateway
that repeats it after a reconnect) changes nothing. A message whose whole
text is a stop keyword (``BLAST_OPT_OUT_KEYWORDS``: STOP, UNSUBSCRIBE, ...;
case, spaces and punctuation ignored, so "Stop." counts and "don't stop"
does not) opts the sender out of everything the instance's tenant sends; a
start keyword (START, UNSTOP) takes back an opt-out that came from a stop
keyword, never one the tenant added. Any other message may be answered by
one of the instance's auto-reply rules (campaigns.autoreplies), in the same
transaction that stores it: a frame seen again is answered never twice, and
a crash before the commit leaves the frame to be stored and answered when the
gateway repeats it.
"""

from __future__ import annotations

import datetime as dt
import logging
import unicodedata

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import autoreplies, optouts, phones
from campaigns.models import InboundAction, InboundMessage, Message, OptOutSource
from instances.models import Instance

logger = logging.getLogger("blast.campaigns")


def keyword_of(text: str) -> str:
    """The text reduced to a possible keyword: letters and digits only, upper case."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in folded if ch.isalnum()).upper()


def _keywords(setting: str) -> set[str]:
    return {keyword_of(word) for word in getattr(settings, setting)}


def action_of(text: str) -> str:
    """``opt_out``, ``opt_in`` or "" for an inbound text."""
    if len(text) > 64:
        return InboundAction.NONE
    word = keyword_of(text)
    if not word:
        return InboundAction.NONE
    if word in _keywords("BLAST_OPT_OUT_KEYWORDS"):
        return InboundAction.OPT_OUT
    if word in _keywords("BLAST_OPT_IN_KEYWORDS"):
        return InboundAction.OPT_IN
    return InboundAction.NONE


def _replied_to(instance_id: int, phone: str, now: dt.datetime) -> tuple[int, int | None] | None:
    """(message id, campaign id) of the last message this instance sent to
    ``phone`` within the reply window, or None."""
    since = now - dt.timedelta(hours=float(settings.BLAST_REPLY_WINDOW_H))
    return (
        Message.objects.filter(instance_id=instance_id, to=phone, sent_at__gte=since)
        .order_by("-sent_at", "-id")
        .values_list("id", "campaign_id")
        .first()
    )


def handle_inbound(instance_id: int, server_id: str, sender: str, text: str) -> None:
    """Store one inbound message and apply its stop/start keyword.

    Idempotent by ``server_id`` (per instance; an empty one is stored every
    time but its keyword still applies idempotently). A sender that is not a
    valid number is stored as received and opts nobody out. An unknown
    instance (deleted meanwhile) is ignored. Never raises for bad input;
    database errors propagate to the caller.
    """
    tenant_id = Instance.objects.filter(pk=instance_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        return
    server_id = (server_id or "")[:100]
    text = (text or "")[:4096]
    try:
        phone: str | None = phones.normalise(sender)
    except phones.InvalidPhone:
        phone = None
    action = action_of(text) if phone is not None else InboundAction.NONE
    now = timezone.now()
    replied = _replied_to(instance_id, phone, now) if phone is not None else None
    rule = autoreplies.rule_for(instance_id, text) if phone is not None and action == InboundAction.NONE else None
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                tenant_id=tenant_id,
                instance_id=instance_id,
                server_id=server_id,
                sender=(phone or sender or "")[:20],
                text=text,
                action=action,
                received_at=now,
                in_reply_to_id=replied[0] if replied else None,
                campaign_id=replied[1] if replied else None,
            )
            if rule is not None and phone is not None:
                autoreplies.answer(inbound, rule, phone, now)
    except IntegrityError:
        return  # seen before: its keyword was applied then
    if phone is None or action == InboundAction.NONE:
        return
    if action == InboundAction.OPT_OUT:
        _, created = optouts.add(
            tenant_id, phone, OptOutSource.INBOUND, instance_id=instance_id, note=text[:200], now=now
        )
        if created:
            logger.info("🚫 instance=%s recipient opted out (tenant %s)", instance_id, tenant_id)
    elif optouts.remove(tenant_id, phone, only_source=OptOutSource.INBOUND):
        logger.info("✅ instance=%s recipient opted back in (tenant %s)", instance_id, tenant_id)
