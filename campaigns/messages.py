"""Accepting messages, one or a batch: the rows first, then the hint.

:func:`accept` stores the message in one transaction (quota checked under the
tenant's quota lock, opt-out list consulted) and, once it is committed,
hints the instance's owner. The ``Idempotency-Key`` is the tenant's unique
``(tenant, idempotency_key)``: a replay finds the stored row; two requests
racing with one key both end on the row the database kept (the loser's
insert raises ``IntegrityError`` and it reads the winner's row). Either way
no second message is ever created for one key.

A message to an opted-out number is accepted and failed at once with reason
``opted_out`` (and a ``failed`` status event, so status webhooks report it):
the client learns it from the answer, and the row records that nothing was
sent.

:func:`accept_many` does the same for a batch, all or nothing, in one
transaction: one opt-out query, one quota reservation for the whole count,
one bulk insert and one hint naming the distinct instances.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import optouts, quota
from campaigns.failures import record_created_failed
from campaigns.models import FailureReason, Message, MessageStatus
from instances import hints
from instances.models import Instance, Tenant
from media.models import Media


class QuotaExceeded(Exception):
    """The tenant's monthly quota is used up until ``resets_at``."""

    def __init__(self, limit: int, resets_at: dt.datetime, now: dt.datetime) -> None:
        self.limit = limit
        self.resets_at = resets_at
        self.retry_after_s = max(1, int((resets_at - now).total_seconds()))
        super().__init__(f"Monthly quota of {limit} messages reached; it resets on {resets_at:%Y-%m-%d %H:%M} UTC.")


class IdempotencyMismatch(Exception):
    """The key was used before for a different message."""

    def __init__(self, message: Message, index: int | None = None) -> None:
        self.message = message
        self.index = index  # the item's position in a batch
        super().__init__(
            f"This Idempotency-Key was already used for message {message.key} with a different "
            "instance, recipient or text; use a new key for a new message."
        )


@dataclass(frozen=True)
class Accepted:
    message: Message
    created: bool  # False: an earlier request with the same key created it


@dataclass(frozen=True)
class NewMessage:
    """One message to accept: ``instance`` is the tenant's, ``to`` is E.164
    (already normalised) and ``text`` already validated."""

    instance: Instance
    to: str
    text: str
    idempotency_key: str = ""
    expires_at: dt.datetime | None = None
    media: Media | None = None  # the tenant's; ``text`` is then its caption


def accept(
    tenant: Tenant,
    instance: Instance,
    to: str,
    text: str,
    idempotency_key: str = "",
    now: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    media: Media | None = None,
) -> Accepted:
    """Store a message for ``instance`` (which must be ``tenant``'s) to
    ``to`` (E.164, already normalised) with ``text`` (already validated).

    Raises :class:`QuotaExceeded` when the tenant's monthly quota has no
    room and :class:`IdempotencyMismatch` when the key names a different
    message. The instance's owner is hinted after commit.
    """
    return _accept(tenant, [NewMessage(instance, to, text, idempotency_key, expires_at, media)], now)[0]


def accept_many(tenant: Tenant, items: Sequence[NewMessage], now: dt.datetime | None = None) -> list[Accepted]:
    """Store ``items`` all or none, in one transaction; answers in their order.

    The opt-out list is read with one query and the quota reserved once for
    every new message that will be sent; the rows are inserted together.
    Items whose key was stored before answer the stored message (raising
    :class:`IdempotencyMismatch`, with the item's ``index``, when it differs).
    Keys must be distinct within ``items`` (``ValueError`` otherwise). One
    hint names the distinct instances after commit.
    """
    keys = [item.idempotency_key for item in items if item.idempotency_key]
    if len(keys) != len(set(keys)):
        raise ValueError("idempotency keys must be distinct within one batch")
    return _accept(tenant, items, now)


def _accept(tenant: Tenant, items: Sequence[NewMessage], now: dt.datetime | None) -> list[Accepted]:
    assert all(item.instance.tenant_id == tenant.pk for item in items)
    now = now or timezone.now()
    for last_try in (False, True):
        answers: list[Accepted | None] = _replay(tenant, items) or [None] * len(items)
        fresh = [n for n, answer in enumerate(answers) if answer is None]
        if not fresh:
            break
        try:
            with transaction.atomic():
                created = _create(tenant, [items[n] for n in fresh], now)
        except IntegrityError:
            # A concurrent request stored one of the keys first: read its row.
            if last_try or not any(items[n].idempotency_key for n in fresh):
                raise
            continue
        for n, message in zip(fresh, created, strict=True):
            answers[n] = Accepted(message, created=True)
        break
    return [answer for answer in answers if answer is not None]


def _replay(tenant: Tenant, items: Sequence[NewMessage]) -> list[Accepted | None] | None:
    """The stored message of each item whose key was used before (None for
    the others); None when no item's key was."""
    keys = [item.idempotency_key for item in items if item.idempotency_key]
    if not keys:
        return None
    stored: dict[str, Message] = {}
    for start in range(0, len(keys), 900):  # under SQLite's parameter limit
        rows = Message.objects.filter(tenant=tenant, idempotency_key__in=keys[start : start + 900])
        stored.update((m.idempotency_key, m) for m in rows.select_related("instance", "campaign", "media"))
    answers: list[Accepted | None] = []
    for index, item in enumerate(items):
        existing = stored.get(item.idempotency_key) if item.idempotency_key else None
        if existing is not None and (
            existing.instance_id != item.instance.pk
            or existing.to != item.to
            or existing.text != item.text
            or existing.media_id != (item.media.pk if item.media is not None else None)
        ):
            raise IdempotencyMismatch(existing, index)
        answers.append(Accepted(existing, created=False) if existing is not None else None)
    return answers if stored else None


def _create(tenant: Tenant, items: Sequence[NewMessage], now: dt.datetime) -> list[Message]:
    """Insert ``items`` (inside the caller's transaction); hint after commit."""
    opted_out = optouts.opted_out_among(tenant.pk, (item.to for item in items))
    # An opted-out message is never sent, so it takes no room in the quota.
    wanted = sum(1 for item in items if item.to not in opted_out)
    if wanted and quota.reserve(tenant.pk, wanted, now) < wanted:
        raise QuotaExceeded(quota.limit_of(tenant.pk), quota.next_month_start(now), now)
    messages = Message.objects.bulk_create([_build(tenant, item, item.to in opted_out, now) for item in items])
    failed = [m for m in messages if m.status == MessageStatus.FAILED]
    if failed:
        record_created_failed(failed, now)
    hinted = sorted({m.instance_id for m in messages if m.status != MessageStatus.FAILED})
    if hinted:
        transaction.on_commit(lambda: hints.send(hinted))
    return messages


def _build(tenant: Tenant, item: NewMessage, opted_out: bool, now: dt.datetime) -> Message:
    return Message(
        tenant=tenant,
        instance=item.instance,
        to=item.to,
        text=item.text,
        media=item.media,
        idempotency_key=item.idempotency_key,
        expires_at=item.expires_at,
        created_at=now,
        **(
            {
                "status": MessageStatus.FAILED,
                "failure_reason": FailureReason.OPTED_OUT,
                "error": optouts.ERROR,
                "failed_at": now,
            }
            if opted_out
            else {}
        ),
    )
