"""Turning a running campaign's contacts into message rows, chunk by chunk.

Each chunk is one transaction holding the campaign row locked: it reads the
next ``BLAST_CAMPAIGN_CHUNK`` contacts after the campaign's cursor (contact
ids ascending), creates their messages, moves the cursor and commits. So a
chunk happens entirely or not at all, two expanders of one campaign take
turns, and pausing or cancelling (which lock the same row) waits for the
chunk in progress and stops the next one. Running the expansion twice
creates nothing twice: the cursor has moved, and the unique constraint on
``(campaign, contact)`` would refuse a second row anyway.

For each contact:

- opted out (campaigns.optouts): a message row failed with ``opted_out``;
- with ``check_numbers``, not on the network by a number check
  (campaigns.numbers): failed with ``not_on_network``, which the report
  counts as skipped. The chunk's numbers the tenant's cache does not know
  are asked first: the chunk stops (``checking``) without moving the cursor
  and is expanded again when the check ends;
- the template renders an empty text or one over 4096 characters (with the
  campaign's media, a caption over 1024): failed with ``invalid_text``;
- otherwise a queued message, rendered from the template (spintax drawn with
  a generator seeded by the campaign and contact, so a contact's text does
  not depend on when it was expanded), on one of the campaign's instances
  (rotation below), not before the next allowed-hours window when the
  window is closed, counted against the tenant's monthly quota. When the
  quota has no room left, the chunk stops at that contact and the campaign
  pauses with reason ``quota_exceeded`` (the messages already created still
  go out); resuming it carries on from there.

Rotation: the instances considered are the campaign's connected instances
(when none is, those not stopped for good; all of them when every one is). ``round_robin`` deals contacts to them
in turn; ``least_loaded`` gives each message to the instance with the
fewest queued messages (all of its messages, not only this campaign's).

After each chunk the instances that got messages are hinted.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from campaigns import lifecycle, numbers, optouts, quota
from campaigns.failures import record_created_failed
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    FailureReason,
    Message,
    MessageStatus,
    PauseReason,
    RotationMode,
)
from campaigns.templating import Template
from campaigns.templating import parse as parse_template
from instances.models import TERMINAL_STATUSES, Instance, Status

logger = logging.getLogger("blast.campaigns")

MAX_TEXT = 4096
MAX_CAPTION = 1024


@dataclass(frozen=True)
class Chunk:
    """What one chunk did. ``more``: call again, contacts remain."""

    created: int = 0
    queued: int = 0
    more: bool = False
    stopped: str = ""  # why nothing more happens now: "", "not_running", "done", "quota", "checking"


def render(template: Template, campaign_key: str, contact: dict[str, Any]) -> str:
    """A contact's text: its fields and ``phone``, spintax seeded per contact."""
    values = {**(contact["fields"] or {}), "phone": contact["phone"]}
    return template.render(values, random.Random(f"{campaign_key}:{contact['id']}"))


def text_problem(text: str, caption: bool = False) -> str:
    """Why a rendered text (the media's caption when ``caption``) cannot be
    sent, or ""."""
    if caption:
        if len(text) > MAX_CAPTION:
            return f"The template rendered a caption of {len(text)} characters; at most {MAX_CAPTION} can be sent."
    elif not text.strip():
        return "The template rendered an empty text for this contact."
    if len(text) > MAX_TEXT:
        return f"The template rendered {len(text)} characters for this contact; at most {MAX_TEXT} can be sent."
    if "\x00" in text:
        return "The rendered text holds a NUL character."
    return ""


class Rotation:
    """Deals messages to instances (see the module docstring)."""

    def __init__(self, campaign: Campaign) -> None:
        rows = list(Instance.objects.filter(campaigns=campaign).order_by("id").values_list("id", "status"))
        connected = [pk for pk, status in rows if status == Status.CONNECTED]
        alive = [pk for pk, status in rows if status not in TERMINAL_STATUSES]
        self.candidates = connected or alive or [pk for pk, _ in rows]
        self.mode = campaign.rotation
        self.turn = campaign.expanded_count
        self.heap: list[tuple[int, int]] = []
        if self.mode == RotationMode.LEAST_LOADED and self.candidates:
            loads = dict(
                Message.objects.filter(instance_id__in=self.candidates, status=MessageStatus.QUEUED)
                .values_list("instance_id")
                .annotate(n=Count("id"))
                .values_list("instance_id", "n")
            )
            self.heap = [(loads.get(pk, 0), pk) for pk in self.candidates]
            heapq.heapify(self.heap)

    def __bool__(self) -> bool:
        return bool(self.candidates)

    def next(self, queued: bool) -> int:
        """The instance of the next message; ``queued`` ones add load."""
        if self.mode == RotationMode.LEAST_LOADED:
            load, pk = self.heap[0]
            if queued:
                heapq.heapreplace(self.heap, (load + 1, pk))
            return pk
        pk = self.candidates[self.turn % len(self.candidates)]
        self.turn += 1
        return pk


def expand_chunk(campaign_id: int, now: dt.datetime | None = None) -> Chunk:
    """Expand the next chunk of a running campaign (see the module docstring)."""
    now = now or timezone.now()
    size = int(settings.BLAST_CAMPAIGN_CHUNK)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status != CampaignStatus.RUNNING:
            return Chunk(stopped="not_running")
        if campaign.expanded_at is not None:
            return Chunk(stopped="done")
        contacts = list(
            Contact.objects.filter(contact_list_id=campaign.contact_list_id, id__gt=campaign.expansion_cursor)
            .order_by("id")
            .values("id", "phone", "fields")[:size]
        )
        rotation = Rotation(campaign)
        if not contacts or not rotation:
            return _finished(campaign, now)
        result = _create(campaign, contacts, rotation, now)
        if result.stopped in ("quota", "checking"):
            return result
        if len(contacts) < size:
            return _finished(campaign, now, created=result.created, queued=result.queued)
        return result


def _finished(campaign: Campaign, now: dt.datetime, created: int = 0, queued: int = 0) -> Chunk:
    campaign.expanded_at = now
    campaign.expansion_progress_at = now
    campaign.updated_at = now
    campaign.save(update_fields=["expanded_at", "expansion_progress_at", "updated_at"])
    logger.info("📦 campaign %s expanded: %d contacts", campaign.pk, campaign.expanded_count)
    return Chunk(created=created, queued=queued, stopped="done")


def _create(campaign: Campaign, contacts: list[dict[str, Any]], rotation: Rotation, now: dt.datetime) -> Chunk:
    existing = set(
        Message.objects.filter(campaign=campaign, contact_id__in=[c["id"] for c in contacts]).values_list(
            "contact_id", flat=True
        )
    )
    fresh = [c for c in contacts if c["id"] not in existing]
    opted = optouts.opted_out_among(campaign.tenant_id, [c["phone"] for c in fresh])
    absent: set[str] = set()
    if campaign.check_numbers:
        asked = list(dict.fromkeys(c["phone"] for c in fresh if c["phone"] not in opted))
        found = numbers.absent_for_campaign(campaign, asked, rotation.candidates[0], now) if asked else set()
        if found is None:
            campaign.expansion_progress_at = now  # waiting on the check is progress: no stall sweep
            campaign.save(update_fields=["expansion_progress_at"])
            return Chunk(stopped="checking")
        absent = found
    template = parse_template(campaign.template)
    key = str(campaign.key)
    caption = campaign.media_id is not None
    planned: list[tuple[dict[str, Any], str, str]] = []  # (contact, text, failure reason or "")
    for contact in fresh:
        if contact["phone"] in opted:
            planned.append((contact, "", FailureReason.OPTED_OUT))
            continue
        if contact["phone"] in absent:
            planned.append((contact, "", FailureReason.NOT_ON_NETWORK))
            continue
        text = render(template, key, contact)
        problem = text_problem(text, caption=caption)
        planned.append((contact, text[:MAX_TEXT], problem))
    wanted = sum(1 for _, _, reason in planned if not reason)
    room = quota.reserve(campaign.tenant_id, wanted, now)
    stopped = ""
    if room < wanted:
        planned, stopped = _cut(planned, room), "quota"
    window = lifecycle.hold_time(campaign, now)
    messages: list[Message] = []
    for contact, text, reason in planned:
        failed = bool(reason)
        fields: dict[str, Any] = {}
        if failed:
            code, error = _failure(reason)
            fields = {"status": MessageStatus.FAILED, "failure_reason": code, "error": error[:500], "failed_at": now}
        messages.append(
            Message(
                tenant_id=campaign.tenant_id,
                instance_id=rotation.next(queued=not failed),
                campaign=campaign,
                contact_id=contact["id"],
                to=contact["phone"],
                text=text,
                media_id=campaign.media_id,
                not_before=None if failed else window,
                created_at=now,
                **fields,
            )
        )
    Message.objects.bulk_create(messages, batch_size=500)
    _failed_events(campaign, [m for m in messages if m.status == MessageStatus.FAILED], now)
    included = contacts[: _included_count(contacts, planned, existing)]
    if included:
        campaign.expansion_cursor = included[-1]["id"]
    campaign.expanded_count += len(included)
    campaign.expansion_progress_at = now
    campaign.updated_at = now
    campaign.save(update_fields=["expansion_cursor", "expanded_count", "expansion_progress_at", "updated_at"])
    queued = [m for m in messages if m.status == MessageStatus.QUEUED]
    if queued and window is None:
        lifecycle.hint_after_commit(sorted({m.instance_id for m in queued}))
    if stopped == "quota":
        limit = quota.limit_of(campaign.tenant_id)
        lifecycle.mark_paused(
            campaign,
            now,
            PauseReason.QUOTA_EXCEEDED,
            f"Paused: the monthly quota of {limit} messages is used up "
            f"({campaign.expanded_count} contacts expanded). Resume it when there is room again.",
        )
    return Chunk(created=len(messages), queued=len(queued), more=not stopped, stopped=stopped)


NOT_ON_NETWORK_ERROR = "A number check found this number not on WhatsApp; the campaign skipped it."


def _failure(reason: str) -> tuple[str, str]:
    """(failure reason, error) of a planned row: ``reason`` is a reason code
    for the skipped ones, an invalid text's explanation otherwise."""
    if reason == FailureReason.OPTED_OUT:
        return FailureReason.OPTED_OUT, optouts.ERROR
    if reason == FailureReason.NOT_ON_NETWORK:
        return FailureReason.NOT_ON_NETWORK, NOT_ON_NETWORK_ERROR
    return FailureReason.INVALID_TEXT, reason


def _cut(planned: list[tuple[dict[str, Any], str, str]], room: int) -> list[tuple[dict[str, Any], str, str]]:
    """The planned rows up to (not including) the first sendable one past ``room``."""
    kept: list[tuple[dict[str, Any], str, str]] = []
    for row in planned:
        if not row[2]:
            if room == 0:
                break
            room -= 1
        kept.append(row)
    return kept


def _included_count(
    contacts: list[dict[str, Any]], planned: list[tuple[dict[str, Any], str, str]], existing: set[int]
) -> int:
    """How many of ``contacts`` (in order) this chunk dealt with: up to the
    last planned one, including contacts skipped for having a message."""
    if not planned:
        # Everything was skipped (all existed), or the quota stopped at the first.
        first_blocked = next((i for i, c in enumerate(contacts) if c["id"] not in existing), len(contacts))
        return first_blocked
    last = planned[-1][0]["id"]
    return next(i for i, c in enumerate(contacts) if c["id"] == last) + 1


def _failed_events(campaign: Campaign, failed: list[Message], now: dt.datetime) -> None:
    if not failed:
        return
    if any(m.pk is None for m in failed):  # a backend that returns no ids
        ids = dict(
            Message.objects.filter(campaign=campaign, contact_id__in=[m.contact_id for m in failed]).values_list(
                "contact_id", "id"
            )
        )
        for m in failed:
            m.pk = ids[m.contact_id]
    record_created_failed(failed, now)


def expand(campaign_id: int, max_chunks: int | None = None) -> Chunk:
    """Expand up to ``max_chunks`` chunks (default
    ``BLAST_CAMPAIGN_CHUNKS_PER_TASK``); the last chunk's answer, with the
    totals of all of them."""
    limit = max_chunks if max_chunks is not None else int(settings.BLAST_CAMPAIGN_CHUNKS_PER_TASK)
    created = queued = 0
    last = Chunk()
    for _ in range(max(1, limit)):
        last = expand_chunk(campaign_id)
        created += last.created
        queued += last.queued
        if not last.more:
            break
    return Chunk(created=created, queued=queued, more=last.more, stopped=last.stopped)
