"""Inbound messages from recipients, and the stop keywords in them.

The connection worker hands the ``inbound`` frames to :func:`handle_many`
in batches (synchronous ORM, through ``database_sync_to_async``): a handful
of queries and one bulk insert per batch, so that one worker keeps up with
a thousand inbound messages a second. It stores the
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
from django.db import transaction
from django.utils import timezone

from campaigns import autoreplies, optouts, phones
from campaigns.models import AutoReplyRule, InboundAction, InboundMessage, Message, OptOutSource
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


def _replied_to(pairs: set[tuple[int, str]], now: dt.datetime) -> dict[tuple[int, str], tuple[int, int | None]]:
    """(instance, phone) -> (message id, campaign id) of the last message that
    instance sent to that phone within the reply window; one query."""
    if not pairs:
        return {}
    since = now - dt.timedelta(hours=float(settings.BLAST_REPLY_WINDOW_H))
    rows = (
        Message.objects.filter(instance_id__in={i for i, _ in pairs}, to__in={p for _, p in pairs}, sent_at__gte=since)
        .order_by("sent_at", "id")
        .values_list("instance_id", "to", "id", "campaign_id")
    )
    # Ascending: the last row of a pair is its latest message.
    return {(i, to): (pk, campaign) for i, to, pk, campaign in rows if (i, to) in pairs}


Frame = tuple[int, str, str, str]  # (instance id, server id, sender, text)


def handle_inbound(instance_id: int, server_id: str, sender: str, text: str) -> None:
    """Store one inbound message and apply its stop/start keyword
    (:func:`handle_many` with one frame)."""
    handle_many([(instance_id, server_id, sender, text)])


def handle_many(frames: list[Frame]) -> int:
    """Store inbound messages, in one transaction, and apply their keywords
    and auto-replies; how many were new.

    Idempotent by ``server_id`` (per instance; an empty one is stored every
    time but its keyword still applies idempotently). A sender that is not a
    valid number is stored as received and opts nobody out. An unknown
    instance (deleted meanwhile) is ignored. Never raises for bad input;
    database errors propagate to the caller (nothing of the batch is kept:
    the caller tries the whole batch again). A handful of queries whatever
    the batch's size, plus the rare keyword or auto-reply.
    """
    if not frames:
        return 0
    now = timezone.now()
    tenants = dict(Instance.objects.filter(pk__in={f[0] for f in frames}).values_list("pk", "tenant_id"))
    planned: list[tuple[InboundMessage, str | None]] = []  # (row, E.164 sender or None)
    seen: set[tuple[int, str]] = set()
    for instance_id, server_id, sender, text in frames:
        if instance_id not in tenants:
            continue
        server_id, text = (server_id or "")[:100], (text or "")[:4096]
        if server_id and (instance_id, server_id) in seen:
            continue  # repeated within the batch
        seen.add((instance_id, server_id))
        try:
            phone: str | None = phones.normalise(sender)
        except phones.InvalidPhone:
            phone = None
        row = InboundMessage(
            tenant_id=tenants[instance_id],
            instance_id=instance_id,
            server_id=server_id,
            sender=(phone or sender or "")[:20],
            text=text,
            action=action_of(text) if phone is not None else InboundAction.NONE,
            received_at=now,
        )
        planned.append((row, phone))
    with transaction.atomic():
        stored = set(
            InboundMessage.objects.filter(
                instance_id__in={row.instance_id for row, _ in planned},
                server_id__in={row.server_id for row, _ in planned if row.server_id},
            ).values_list("instance_id", "server_id")
        )
        fresh = [
            (row, phone)
            for row, phone in planned
            if not row.server_id or (row.instance_id, row.server_id) not in stored
        ]
        replies = _replied_to({(row.instance_id, phone) for row, phone in fresh if phone is not None}, now)
        for row, phone in fresh:
            if phone is not None and (row.instance_id, phone) in replies:
                row.in_reply_to_id, row.campaign_id = replies[(row.instance_id, phone)]
        created = InboundMessage.objects.bulk_create([row for row, _ in fresh])
        _act(list(zip(created, (phone for _, phone in fresh), strict=True)), now)
    return len(fresh)


def _act(rows: list[tuple[InboundMessage, str | None]], now: dt.datetime) -> None:
    """Stop/start keywords and auto-replies of just-stored messages (inside
    the storing transaction; bulk_create set their ids: PostgreSQL and SQLite
    return them)."""
    with_rules = set(
        AutoReplyRule.objects.filter(instance_id__in={row.instance_id for row, _ in rows}, enabled=True).values_list(
            "instance_id", flat=True
        )
    )
    for row, phone in rows:
        if phone is None:
            continue
        if row.action == InboundAction.OPT_OUT:
            _, created = optouts.add(
                row.tenant_id, phone, OptOutSource.INBOUND, instance_id=row.instance_id, note=row.text[:200], now=now
            )
            if created:
                logger.info("🚫 instance=%s recipient opted out (tenant %s)", row.instance_id, row.tenant_id)
        elif row.action == InboundAction.OPT_IN:
            if optouts.remove(row.tenant_id, phone, only_source=OptOutSource.INBOUND):
                logger.info("✅ instance=%s recipient opted back in (tenant %s)", row.instance_id, row.tenant_id)
        elif row.instance_id in with_rules:
            rule = autoreplies.rule_for(row.instance_id, row.text)
            if rule is not None:
                autoreplies.answer(row, rule, phone, now)
