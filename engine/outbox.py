"""The connection worker's side of messages: what to send next, and
recording what the gateway answered.

Synchronous ORM code, called from the worker through
``database_sync_to_async``. Outcomes are applied in batches and only move a
message forward (queued -> sent -> delivered -> read, or -> failed), so a
late or repeated frame never undoes a newer state, and a resend after a
drop (same client id, deduplicated by the gateway) records nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q

from campaigns.due import instances_with_due_messages
from campaigns.failures import fail_unsent
from campaigns.models import Campaign, FailureReason, Message, MessageEvent, MessageStatus
from instances import restrictions, sending
from instances.models import Instance
from media.models import Media

# Rows per statement in the bulk writes: well under SQLite's parameter limit.
CHUNK = 500


@dataclass(frozen=True)
class MediaRef:
    """A message's file, as its ``send`` frame describes it (protocol v1.1)."""

    id: int
    kind: str
    mime: str
    filename: str
    size: int


@dataclass(frozen=True)
class Outgoing:
    """A queued message, as the worker needs it to send it."""

    id: int
    client_id: str
    to: str
    text: str  # with ``media``, its caption
    delay_min_s: float
    delay_max_s: float
    media: MediaRef | None = None


@dataclass(frozen=True)
class Policy:
    """The instance's policy in force (instances.sending: warm-up,
    slow-downs and sending hours applied); nothing is sent before
    ``paused_until``."""

    delay_min_s: float
    delay_max_s: float
    hourly_cap: int
    daily_cap: int
    paused_until: float = 0.0
    typing: bool = False  # a presence composing frame before each message


def recent_sends(instance_id: int, now: float) -> list[float]:
    """Epoch seconds of this instance's sends in the last 24 hours, oldest first."""
    since = dt.datetime.fromtimestamp(now - 86_400, tz=dt.UTC)
    stamps = Message.objects.filter(instance_id=instance_id, last_sent_at__gte=since).values_list(
        "last_sent_at", flat=True
    )
    return sorted(s.timestamp() for s in stamps)


Read = tuple[Policy, list[Outgoing], bool]


def next_batches(requests: list[tuple[int, list[int], int]], now: float) -> list[Read]:
    """The next batches of many instances: ``requests`` holds (instance id,
    message ids to leave out, limit). Each answer is the instance's sending
    policy, its next queued messages, oldest first (due: ``not_before``
    passed; not in flight), and whether the read was full (more may be
    waiting). Messages read whose ``expires_at`` passed are failed with
    reason expired instead of being returned. On PostgreSQL one
    statement reads them all (a ``LATERAL`` read per instance, each on the
    instance's queue index); elsewhere one query per instance."""
    when = _dt(now)
    if connection.vendor == "postgresql":
        rows = _read_postgresql(requests, when)
    else:
        # One query finds the instances that have anything due; only those
        # are read (most instances, most of the time, have nothing).
        busy = set(instances_with_due_messages(when, among=[instance_id for instance_id, _, _ in requests]))
        rows = {
            instance_id: _read_one(instance_id, exclude, limit, when)
            for instance_id, exclude, limit in requests
            if instance_id in busy
        }
    expired = [row["id"] for found in rows.values() for row in found if _expired(row, when)]
    if expired:
        fail_unsent(
            Message.objects.filter(id__in=expired),
            FailureReason.EXPIRED,
            "expired before it could be sent",
            when,
            attempted=True,
        )
    return [_batch(rows.get(instance_id, []), limit, when) for instance_id, _, limit in requests]


_FIELDS = ("id", "key", "to", "text", "expires_at", "campaign_delay_min_s", "campaign_delay_max_s")
_MEDIA = ("media_id", "media_kind", "media_mime", "media_filename", "media_size")
_POLICY = (
    "send_delay_min_s",
    "send_delay_max_s",
    "hourly_cap",
    "daily_cap",
    "warmup",
    "warmup_started_at",
    "slowed_until",
    "paused_until",
    "typing",
    "send_hours_start",
    "send_hours_end",
    "send_timezone",
    "send_days",
)


def _read_one(instance_id: int, exclude: list[int], limit: int, when: dt.datetime) -> list[dict[str, Any]]:
    return list(
        Message.objects.filter(instance_id=instance_id, status=MessageStatus.QUEUED)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=when))
        .exclude(id__in=exclude)
        .order_by("id")
        .values(
            *_FIELDS[:5],
            "media_id",
            campaign_delay_min_s=F("campaign__send_delay_min_s"),
            campaign_delay_max_s=F("campaign__send_delay_max_s"),
            media_kind=F("media__kind"),
            media_mime=F("media__mime"),
            media_filename=F("media__filename"),
            media_size=F("media__size"),
            **{name: F(f"instance__{name}") for name in _POLICY},
        )[:limit]
    )


def _read_postgresql(requests: list[tuple[int, list[int], int]], when: dt.datetime) -> dict[int, list[dict[str, Any]]]:
    q = connection.ops.quote_name
    exclude = [message_id for _, held, _ in requests for message_id in held]
    sql = f"""
        SELECT r.instance_id, m.id, m.key, m.{q("to")}, m.text, m.expires_at,
               c.send_delay_min_s, c.send_delay_max_s,
               m.media_id, f.kind, f.mime, f.filename, f.size,
               i.send_delay_min_s, i.send_delay_max_s, i.hourly_cap, i.daily_cap,
               i.warmup, i.warmup_started_at, i.slowed_until, i.paused_until, i.typing,
               i.send_hours_start, i.send_hours_end, i.send_timezone, i.send_days
        FROM unnest(%s::bigint[], %s::int[]) AS r(instance_id, lim)
        JOIN {q(Instance._meta.db_table)} i ON i.id = r.instance_id
        CROSS JOIN LATERAL (
            SELECT id, key, {q("to")}, text, expires_at, campaign_id, media_id
            FROM {q(Message._meta.db_table)}
            WHERE instance_id = r.instance_id AND status = %s
              AND (not_before IS NULL OR not_before <= %s)
              AND NOT (id = ANY(%s::bigint[]))
            ORDER BY id
            LIMIT r.lim
        ) m
        LEFT JOIN {q(Campaign._meta.db_table)} c ON c.id = m.campaign_id
        LEFT JOIN {q(Media._meta.db_table)} f ON f.id = m.media_id
        ORDER BY r.instance_id, m.id
    """
    names = (*_FIELDS, *_MEDIA, *_POLICY)
    found: dict[int, list[dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [[r[0] for r in requests], [r[2] for r in requests], MessageStatus.QUEUED, when, exclude],
        )
        for instance_id, *values in cursor.fetchall():
            found.setdefault(instance_id, []).append(dict(zip(names, values, strict=True)))
    return found


def _expired(row: dict[str, Any], when: dt.datetime) -> bool:
    return row["expires_at"] is not None and row["expires_at"] <= when


def _days(value: Any) -> list[str] | None:
    """An instance's sending days: a raw read returns the JSON's text."""
    found = json.loads(value) if isinstance(value, str) else value
    return [str(day) for day in found] if isinstance(found, list) else None


def _batch(rows: list[dict[str, Any]], limit: int, when: dt.datetime) -> Read:
    if not rows:
        return Policy(0, 0, 0, 0), [], False
    first = rows[0]
    now = when.timestamp()
    effective = sending.from_settings(
        delay_min_s=first["send_delay_min_s"],
        delay_max_s=first["send_delay_max_s"],
        hourly_cap=first["hourly_cap"],
        daily_cap=first["daily_cap"],
        now=now,
        warmup=bool(first["warmup"]),
        warmup_started_at=first["warmup_started_at"],
        slowed_until=first["slowed_until"],
        paused_until=first["paused_until"],
        hours=(first["send_hours_start"], first["send_hours_end"], first["send_timezone"], _days(first["send_days"])),
    )
    policy = Policy(
        delay_min_s=effective.delay_min_s,
        delay_max_s=effective.delay_max_s,
        hourly_cap=effective.hourly_cap,
        daily_cap=effective.daily_cap,
        paused_until=effective.paused_until,
        typing=bool(first["typing"]),
    )
    batch = [
        Outgoing(
            id=row["id"],
            client_id=row["key"].hex,
            to=row["to"],
            text=row["text"],
            **_delays(row, policy, effective.slowed),
            media=_media(row),
        )
        for row in rows
        if not _expired(row, when)
    ]
    return policy, batch, len(rows) >= limit


def _delays(row: dict[str, Any], policy: Policy, slowed: bool) -> dict[str, float]:
    """A message's delay range: its campaign's (slowed down with the
    instance) or the instance's policy."""
    low, high = row["campaign_delay_min_s"], row["campaign_delay_max_s"]
    if low is None or high is None:
        return {
            "delay_min_s": policy.delay_min_s if low is None else low,
            "delay_max_s": policy.delay_max_s if high is None else high,
        }
    if slowed:
        low, high = sending.slowed_delays(low, high, float(settings.BLAST_SLOWDOWN_FACTOR))
    return {"delay_min_s": low, "delay_max_s": high}


def _media(row: dict[str, Any]) -> MediaRef | None:
    if row["media_id"] is None:
        return None
    return MediaRef(row["media_id"], row["media_kind"], row["media_mime"], row["media_filename"], row["media_size"])


MEDIA_UNSUPPORTED = "the instance's gateway did not announce media (protocol v1.1): it cannot send files"


def fail_media_unsupported(message_id: int, now: float) -> bool:
    """Fail a claimed message whose file the session's gateway cannot send."""
    failed = fail_unsent(
        Message.objects.filter(id=message_id),
        FailureReason.MEDIA_UNSUPPORTED,
        MEDIA_UNSUPPORTED,
        _dt(now),
        attempted=True,
    )
    return bool(failed)


def claim(instance_id: int, ids: list[int], now: float) -> list[int]:
    """Claim messages of ``instance_id`` for sending: those still queued,
    due and still the instance's are counted as attempted (``attempts + 1``,
    ``last_sent_at``) and returned; the others (sent meanwhile, held by a
    pause, failed by a cancel or an opt-out, moved to another instance of
    their campaign) are left alone. The frame goes out only for the ids
    returned."""
    return claim_many([(instance_id, ids)], now)[0]


def claim_many(requests: list[tuple[int, list[int]]], now: float) -> list[list[int]]:
    """:func:`claim` for many senders' batches at once: one conditional
    ``UPDATE ... FROM (VALUES ...) RETURNING`` per chunk (PostgreSQL and
    SQLite both have it). The condition is the claim, so no lock is held
    between a read and a write; and because it names the instance, a message
    that a campaign moved to another instance (campaigns.reroute moves only
    unsent ones: attempts equal to nacks) is claimed by one of them, never
    both."""
    rows = [(message_id, instance_id) for instance_id, ids in requests for message_id in ids]
    if not rows:
        return [[] for _ in requests]
    when = _db_datetime(_dt(now))
    claimed = {
        row[0]
        for row in _update_from_values(
            {"id": "bigint", "instance_id": "bigint", "at": "timestamptz"},
            [(message_id, instance_id, when) for message_id, instance_id in rows],
            "attempts = {t}.attempts + 1, last_sent_at = v.at",
            "{t}.id = v.id AND {t}.instance_id = v.instance_id AND {t}.status = '"
            + MessageStatus.QUEUED
            + "' AND ({t}.not_before IS NULL OR {t}.not_before <= v.at)",
            returning="{t}.id",
        )
    }
    return [[message_id for message_id in ids if message_id in claimed] for _, ids in requests]


def unclaim(instance_id: int, ids: list[int]) -> int:
    """Take back claims whose frames were never written (the session ended
    mid-batch): ``attempts - 1`` on the rows still queued on the instance,
    so that a campaign may move them (campaigns.reroute moves only
    unsent messages: attempts equal to nacks). Never called for a message that was written."""
    if not ids:
        return 0
    return Message.objects.filter(
        id__in=ids, instance_id=instance_id, status=MessageStatus.QUEUED, attempts__gt=0
    ).update(attempts=F("attempts") - 1)


def _update_from_values(
    columns: dict[str, str], rows: list[tuple[Any, ...]], set_sql: str, where_sql: str, returning: str = ""
) -> list[tuple[Any, ...]]:
    """One ``UPDATE`` of the message table per chunk of ``rows``, joined with
    them as a ``VALUES`` list named ``v`` whose ``columns`` map each name to
    its PostgreSQL type (SQLite needs none); PostgreSQL and SQLite both run
    ``UPDATE ... FROM`` and ``RETURNING``. Returns the rows returned."""
    table = Message._meta.db_table
    postgres = connection.vendor == "postgresql"
    row_sql = "(" + ", ".join(f"%s::{kind}" if postgres else "%s" for kind in columns.values()) + ")"
    returned: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            cursor.execute(
                f"WITH v({', '.join(columns)}) AS (VALUES {', '.join([row_sql] * len(chunk))}) "
                f"UPDATE {table} SET {set_sql.format(t=table)} FROM v WHERE {where_sql.format(t=table)}"
                + (f" RETURNING {returning.format(t=table)}" if returning else ""),
                [value for row in chunk for value in row],
            )
            if returning:
                returned.extend(cursor.fetchall())
    return returned


def _record_acks(acks: dict[str, tuple[str, float]]) -> list[MessageEvent]:
    """Mark the acked messages that are still queued as sent, in one
    conditional ``UPDATE`` per chunk; return the ``sent`` events of the rows
    it changed. A repeated ack (a resend after a drop) matches no queued row
    and records nothing."""
    key_field = Message._meta.get_field("key")
    by_key = {key.hex: ack for client_id, ack in acks.items() if (key := _key(client_id)) is not None}
    changed = _update_from_values(
        {"key": "uuid", "server_id": "text", "sent_at": "timestamptz", "status": "text"},
        [
            (
                key_field.get_db_prep_value(uuid.UUID(hex=key), connection),
                server_id[:100],
                _db_datetime(_dt(at)),
                MessageStatus.QUEUED,
            )
            for key, (server_id, at) in by_key.items()
        ],
        f"status = '{MessageStatus.SENT}', server_id = v.server_id, sent_at = v.sent_at, not_before = NULL",
        "{t}.key = v.key AND {t}.status = v.status",
        "{t}.id, {t}.key, {t}.tenant_id, {t}.instance_id, {t}.campaign_id",
    )
    events = []
    for message_id, key, tenant_id, instance_id, campaign_id in changed:
        server_id, at = by_key[uuid.UUID(str(key)).hex]
        events.append(
            MessageEvent(
                message_id=message_id,
                tenant_id=tenant_id,
                instance_id=instance_id,
                campaign_id=campaign_id,
                status=MessageStatus.SENT,
                at=_dt(at),
                data={"server_id": server_id[:100]},
            )
        )
    return events


@dataclass
class Outcomes:
    """What the gateway said about messages, collected between flushes."""

    acks: dict[str, tuple[str, float]] = field(default_factory=dict)  # client id -> (server id, time)
    nacks: dict[str, tuple[bool, str, float | None, float]] = field(default_factory=dict)
    receipts: dict[str, tuple[str, float]] = field(default_factory=dict)  # client id -> (status, time)

    def __bool__(self) -> bool:
        return bool(self.acks or self.nacks or self.receipts)

    def __len__(self) -> int:
        return len(self.acks) + len(self.nacks) + len(self.receipts)

    def receipt(self, client_id: str, status: str, at: float) -> None:
        # Keep the furthest status seen (read beats delivered).
        previous = self.receipts.get(client_id)
        if previous is None or (previous[0] == MessageStatus.DELIVERED and status == MessageStatus.READ):
            self.receipts[client_id] = (status, at)

    def merge_newer(self, newer: Outcomes) -> Outcomes:
        merged = Outcomes(
            acks={**self.acks, **newer.acks},
            nacks={**self.nacks, **newer.nacks},
            receipts=dict(self.receipts),
        )
        for client_id, (status, at) in newer.receipts.items():
            merged.receipt(client_id, status, at)
        return merged


def _key(client_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(hex=client_id)
    except ValueError:
        return None


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _db_datetime(value: dt.datetime) -> Any:
    """A datetime as a raw query parameter, the way Django stores it."""
    return connection.ops.adapt_datetimefield_value(value)


def apply(outcomes: Outcomes, default_nack_retry_s: float) -> None:
    """Record a batch of outcomes in one transaction, forward-only."""
    with transaction.atomic():
        # Acks first, as one statement; nacks and receipts then read the rows
        # as the acks left them (a receipt in the same batch as its ack
        # advances the message from sent).
        events = _record_acks(outcomes.acks) if outcomes.acks else []
        keys = {
            client_id: key
            for client_id in {*outcomes.nacks, *outcomes.receipts}
            if (key := _key(client_id)) is not None
        }
        if not keys:
            MessageEvent.objects.bulk_create(events)
            return
        rows = {
            row.key.hex: row
            for row in Message.objects.select_for_update()
            .filter(key__in=list(keys.values()))
            .only("id", "key", "tenant_id", "instance_id", "campaign_id", "status")
        }

        def event(row: Message, status: str, at: float, **data: Any) -> None:
            events.append(
                MessageEvent(
                    message_id=row.id,
                    tenant_id=row.tenant_id,
                    instance_id=row.instance_id,
                    campaign_id=row.campaign_id,
                    status=status,
                    at=_dt(at),
                    data=data,
                )
            )

        nacked: list[tuple[int, str, float]] = []
        for client_id, (permanent, error, retry_after, at) in outcomes.nacks.items():
            row = rows.get(client_id)
            if row is None or row.status != MessageStatus.QUEUED:
                continue
            nacked.append((row.instance_id, error, at))
            if permanent:
                Message.objects.filter(id=row.id, status=MessageStatus.QUEUED).update(
                    status=MessageStatus.FAILED,
                    failure_reason=FailureReason.NACK_PERMANENT,
                    error=error[:500],
                    failed_at=_dt(at),
                )
                row.status = MessageStatus.FAILED
                event(row, MessageStatus.FAILED, at, reason=FailureReason.NACK_PERMANENT, error=error[:200])
            else:
                delay = retry_after if retry_after is not None else default_nack_retry_s
                Message.objects.filter(id=row.id, status=MessageStatus.QUEUED).update(
                    not_before=_dt(at + delay), error=error[:500], nacks=F("nacks") + 1
                )
        hits = restrictions.hits_of(nacked)
        if hits:  # the network limits these accounts: slow them down (or pause them)
            restrictions.record(hits, _dt(max(at for stamps in hits.values() for at in stamps)))
        advanced: list[tuple[Any, ...]] = []
        for client_id, (status, at) in outcomes.receipts.items():
            row = rows.get(client_id)
            if row is None:
                continue
            advance = _receipt_fields(row.status, status, at)
            if advance:
                advanced.append(
                    (
                        row.id,
                        row.status,
                        status,
                        *(
                            _db_datetime(advance[name]) if name in advance else None
                            for name in ("sent_at", "delivered_at", "read_at")
                        ),
                    )
                )
                if row.status == MessageStatus.QUEUED:  # a receipt implies the ack
                    event(row, MessageStatus.SENT, at)
                if status == MessageStatus.READ and row.status in (MessageStatus.QUEUED, MessageStatus.SENT):
                    event(row, MessageStatus.DELIVERED, at)
                event(row, status, at)
                row.status = status
        # The rows are locked by this transaction: one statement for all.
        _update_from_values(
            {
                "id": "bigint",
                "from_status": "text",
                "status": "text",
                "sent_at": "timestamptz",
                "delivered_at": "timestamptz",
                "read_at": "timestamptz",
            },
            advanced,
            "status = v.status, sent_at = COALESCE(v.sent_at, {t}.sent_at), "
            "delivered_at = COALESCE(v.delivered_at, {t}.delivered_at), read_at = COALESCE(v.read_at, {t}.read_at)",
            "{t}.id = v.id AND {t}.status = v.from_status",
        )
        MessageEvent.objects.bulk_create(events)


def _receipt_fields(current: str, status: str, at: float) -> dict[str, Any]:
    order = [MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ]
    if current not in order or status not in (MessageStatus.DELIVERED, MessageStatus.READ):
        return {}
    if order.index(status) <= order.index(current):
        return {}
    fields: dict[str, Any] = {"status": status}
    if current == MessageStatus.QUEUED:
        fields["sent_at"] = _dt(at)
    if status == MessageStatus.DELIVERED or current in (MessageStatus.QUEUED, MessageStatus.SENT):
        fields["delivered_at"] = _dt(at)
    if status == MessageStatus.READ:
        fields["read_at"] = _dt(at)
    return fields
