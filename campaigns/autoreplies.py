"""Auto-reply rules: an instance answers inbound messages that match a pattern.

:func:`rule_for` picks the first enabled rule of the instance (lowest
``priority``, then oldest) whose pattern matches the text, case ignored:

- ``exact``: the whole message is the pattern (spaces at either end and runs
  of spaces inside do not count);
- ``contains``: the pattern appears in the message;
- ``regex``: the pattern (the ``regex`` module's syntax, a superset of
  Python's) matches somewhere in the message. A pattern that takes longer
  than ``BLAST_AUTO_REPLY_REGEX_TIMEOUT_S`` on one message counts as no
  match and is logged, so that a catastrophic pattern costs the worker
  milliseconds, never its session.

:func:`answer` sends the rule's reply (text, or media with the text as its
caption) through :func:`campaigns.messages.accept`, inside the caller's
transaction. An instance answers one contact automatically at most once per
cool-down (the rule's ``cooldown_s``), whatever rule matched: the
:class:`~campaigns.models.AutoReplyContact` row is taken with one
conditional UPDATE (or its INSERT), so two workers racing on one contact
send one reply. That is what keeps two bots from answering each other for
ever. Stop and start keywords are never answered (campaigns.inbound handles
them first), nor is an opted-out contact.
"""

from __future__ import annotations

import datetime as dt
import logging

import regex
from django.conf import settings
from django.db import IntegrityError, transaction

from campaigns import optouts
from campaigns.messages import QuotaExceeded, accept
from campaigns.models import AutoReplyContact, AutoReplyRule, InboundMessage, Message, ReplyMatch
from instances.models import Instance

logger = logging.getLogger("blast.campaigns")

MAX_PATTERN = 500
# What a tenant sets on a rule (the API and the admin).
RULE_FIELDS = ["instance", "name", "match", "pattern", "reply_text", "reply_media", "cooldown_s", "priority", "enabled"]


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def pattern_problem(match: str, pattern: str) -> str:
    """Why ``pattern`` cannot be used with ``match``, or ""."""
    if not pattern.strip():
        return "Enter a pattern: the word, phrase or expression to answer."
    if len(pattern) > MAX_PATTERN:
        return f"At most {MAX_PATTERN} characters."
    if match == ReplyMatch.REGEX:
        try:
            regex.compile(pattern, regex.IGNORECASE)
        except regex.error as exc:
            return f"Not a valid regular expression: {exc}."
    return ""


def matches(rule: AutoReplyRule, text: str) -> bool:
    """Whether ``rule``'s pattern matches ``text`` (see the module docstring)."""
    if rule.match == ReplyMatch.EXACT:
        return _folded(text) == _folded(rule.pattern)
    if rule.match == ReplyMatch.CONTAINS:
        return _folded(rule.pattern) in _folded(text)
    try:
        found = regex.search(
            rule.pattern, text, regex.IGNORECASE, timeout=float(settings.BLAST_AUTO_REPLY_REGEX_TIMEOUT_S)
        )
    except TimeoutError:
        logger.warning("⏱️ auto-reply rule %s: its pattern ran out of time on a message; not answered", rule.pk)
        return False
    except regex.error:
        logger.warning("⚠️ auto-reply rule %s: its pattern is not a valid regular expression", rule.pk)
        return False
    return found is not None


def rule_for(instance_id: int, text: str) -> AutoReplyRule | None:
    """The first enabled rule of the instance that matches ``text``."""
    if not text.strip():
        return None
    rules = AutoReplyRule.objects.filter(instance_id=instance_id, enabled=True).order_by("priority", "id")
    for rule in rules.select_related("reply_media"):
        if matches(rule, text):
            return rule
    return None


def _take_cooldown(instance_id: int, phone: str, cooldown_s: int, now: dt.datetime) -> bool:
    """Claim the contact's cool-down: False when the instance answered it
    automatically less than ``cooldown_s`` ago."""
    since = now - dt.timedelta(seconds=cooldown_s)
    taken = AutoReplyContact.objects.filter(instance_id=instance_id, phone=phone, last_reply_at__lte=since).update(
        last_reply_at=now
    )
    if taken:
        return True
    try:
        with transaction.atomic():
            AutoReplyContact.objects.create(instance_id=instance_id, phone=phone, last_reply_at=now)
    except IntegrityError:
        return False  # answered within the cool-down (or by a racing worker just now)
    return True


def answer(inbound: InboundMessage, rule: AutoReplyRule, phone: str, now: dt.datetime) -> Message | None:
    """Send ``rule``'s reply to ``phone`` for ``inbound`` (already stored, in
    the caller's transaction); None when the cool-down, an opt-out or the
    quota holds it back."""
    if optouts.opted_out_among(inbound.tenant_id, [phone]):
        return None
    if not _take_cooldown(inbound.instance_id, phone, rule.cooldown_s, now):
        logger.info("🤫 instance=%s auto-reply %s held back by its cool-down", inbound.instance_id, rule.pk)
        return None
    instance = Instance.objects.select_related("tenant").get(pk=inbound.instance_id)
    try:
        with transaction.atomic():
            accepted = accept(
                instance.tenant,
                instance,
                phone,
                rule.reply_text,
                idempotency_key=f"auto-reply:{inbound.key}",
                now=now,
                media=rule.reply_media,
            )
    except QuotaExceeded:
        logger.warning("⚠️ instance=%s auto-reply %s not sent: the monthly quota is used up", instance.pk, rule.pk)
        return None
    InboundMessage.objects.filter(pk=inbound.pk).update(auto_reply=accepted.message, auto_reply_rule=rule)
    logger.info("🤖 instance=%s auto-reply %s answered an inbound message", instance.pk, rule.pk)
    return accepted.message
