"""The alert evaluator (beat job ``monitoring.evaluate_alerts``).

Each run:

1. reads the connection events appended since its cursor (an id, plus the
   ids it saw skipped: :class:`monitoring.transitions.Cursor`), in chunks;
   for each chunk, in one transaction, it applies the events to the
   instances' alert conditions, raises an alert per transition, folds the
   events into the counters' tally (:class:`monitoring.models.EventTally`)
   and moves the cursor. Nothing is missed and nothing is raised twice,
   whatever the run frequency, because the cursor and the alerts commit
   together;
2. compares the platform's score, live workers and recovery jobs with their
   last known states and raises an alert per transition.

The cursor row is locked for the whole of each transaction, so two
evaluators running at once (a backlog, two beats) take turns.
Every alert gets one :class:`AlertDelivery` per matching enabled webhook:
platform-wide webhooks get every alert, a tenant's webhooks the alerts about
its instances. :func:`evaluate` returns the new deliveries' ids; the task
hands them to :mod:`monitoring.delivery`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from instances.models import ConnectionEvent, Instance
from monitoring import health, transitions
from monitoring.counts import count_instances
from monitoring.models import (
    Alert,
    AlertDelivery,
    AlertKind,
    AlertState,
    AlertWebhook,
    EventTally,
    Severity,
)
from monitoring.transitions import FIRING, RESOLVED, Change, Cursor

logger = logging.getLogger("blast.monitoring")

CURSOR_KEY = "events:cursor"
CHUNK = 1000

CRITICAL_KINDS = frozenset(
    {
        AlertKind.CLIENT_OUTDATED,
        AlertKind.NO_LIVE_WORKER,
        AlertKind.BEAT_STALLED,
        AlertKind.PLATFORM_DOWN,
        AlertKind.GATEWAY_DOWN,
    }
)


def severity_of(kind: str, status: str) -> str:
    if status == RESOLVED:
        return Severity.INFO
    return Severity.CRITICAL if kind in CRITICAL_KINDS else Severity.WARNING


def instance_key(instance_id: int, slot: str) -> str:
    return f"instance:{instance_id}:{slot}"


# -- recipients -------------------------------------------------------------------


@dataclass
class Recipients:
    platform: list[int]
    by_tenant: dict[int, list[int]]

    @classmethod
    def load(cls) -> Recipients:
        platform: list[int] = []
        by_tenant: dict[int, list[int]] = defaultdict(list)
        for webhook_id, tenant_id in AlertWebhook.objects.filter(enabled=True).values_list("id", "tenant_id"):
            if tenant_id is None:
                platform.append(webhook_id)
            else:
                by_tenant[tenant_id].append(webhook_id)
        return cls(platform, dict(by_tenant))

    def for_tenant(self, tenant_id: int | None) -> list[int]:
        return self.platform + (self.by_tenant.get(tenant_id, []) if tenant_id is not None else [])


def _create(alerts: list[Alert], recipients: Recipients) -> list[int]:
    """Save ``alerts`` and their deliveries; return the deliveries' ids."""
    if not alerts:
        return []
    created = Alert.objects.bulk_create(alerts)
    if any(alert.pk is None for alert in created):  # a backend that returns no ids
        for alert in alerts:
            alert.save()
        created = alerts
    deliveries = [
        AlertDelivery(alert=alert, webhook_id=webhook_id, next_attempt_at=alert.created_at)
        for alert in created
        for webhook_id in recipients.for_tenant(alert.tenant_id)
    ]
    for alert in created:
        marker = "🔔" if alert.status == FIRING else "🔕"
        logger.info("%s alert %s %s: %s", marker, alert.kind, alert.status, alert.summary)
    if not deliveries:
        return []
    AlertDelivery.objects.bulk_create(deliveries)
    alert_ids = [alert.pk for alert in created]
    return list(AlertDelivery.objects.filter(alert_id__in=alert_ids).values_list("id", flat=True))


# -- instance conditions from events ---------------------------------------------------


def _instance_summary(change: Change, info: dict[str, Any]) -> str:
    who = f"{info.get('tenant__slug', '?')}/{info.get('name', info.get('id'))}"
    reason = f" after {transitions.reason_label(change.reason)}" if change.reason else ""
    if change.kind == transitions.BREAKER_OPEN:
        if change.status == FIRING:
            return f"{who}: circuit breaker opened{reason}; no attempt until the cooldown ends"
        return f"{who}: circuit breaker closed"
    label = AlertKind(change.kind).label if change.kind in AlertKind.values else change.kind
    if change.status == FIRING:
        return f"{who}: {label.lower()}; a person must act"
    return f"{who}: connected again (was {label.lower()})"


def _gateway_outage(row: tuple[Any, ...]) -> bool:
    """A breaker that opened while its gateway failed for everyone: the
    gateway's own ``gateway_down`` alert says it, once, not once per instance."""
    data = row[5]
    return row[2] == transitions.BREAKER_OPENED and isinstance(data, dict) and bool(data.get("gateway_suspect"))


def _instance_alerts(rows: list[tuple[int, int, str, str, dt.datetime]], now: dt.datetime) -> list[Alert]:
    """Apply a chunk of events (id, instance id, kind, reason, at) to the
    stored instance conditions; return the alerts to raise."""
    relevant = [row for row in rows if row[2] in transitions.RELEVANT_KINDS]
    if not relevant:
        return []
    instance_ids = {row[1] for row in relevant}
    stored: dict[int, dict[str, str]] = defaultdict(dict)
    for key, instance_id, state in AlertState.objects.filter(instance_id__in=instance_ids).values_list(
        "key", "instance_id", "state"
    ):
        stored[instance_id][key.rsplit(":", 1)[1]] = state
    before = {i: dict(stored[i]) for i in instance_ids}
    info = {
        row["id"]: row
        for row in Instance.objects.filter(id__in=instance_ids).values(
            "id", "name", "key", "tenant_id", "tenant__slug", "status", "last_reason"
        )
    }
    alerts: list[Alert] = []
    for event_id, instance_id, kind, reason, at in relevant:
        if instance_id not in info:
            continue  # deleted since: nobody to tell about
        for change in transitions.instance_event(stored[instance_id], kind, reason):
            row = info[instance_id]
            alerts.append(
                Alert(
                    kind=change.kind,
                    status=change.status,
                    severity=severity_of(change.kind, change.status),
                    tenant_id=row["tenant_id"],
                    instance_id=instance_id,
                    summary=_instance_summary(change, row)[:300],
                    data={
                        "instance": {
                            "id": instance_id,
                            "key": str(row["key"]),
                            "name": row["name"],
                            "tenant": row["tenant__slug"],
                            "status": row["status"],
                            "last_reason": row["last_reason"],
                        },
                        "reason": change.reason,
                        "event": {"id": event_id, "kind": kind, "at": at.isoformat()},
                    },
                    source_event_id=event_id,
                    created_at=now,
                )
            )
    _store_instance_states(before, stored, info, now)
    return alerts


def _store_instance_states(
    before: dict[int, dict[str, str]],
    after: dict[int, dict[str, str]],
    info: dict[int, dict[str, Any]],
    now: dt.datetime,
) -> None:
    removed: list[str] = []
    for instance_id, old in before.items():
        new = after.get(instance_id, {})
        if instance_id not in info:
            continue
        for slot in old.keys() - new.keys():
            removed.append(instance_key(instance_id, slot))
        for slot, value in new.items():
            if old.get(slot) != value:
                AlertState.objects.update_or_create(
                    key=instance_key(instance_id, slot),
                    defaults={"instance_id": instance_id, "state": value, "since": now, "updated_at": now},
                )
    if removed:
        AlertState.objects.filter(key__in=removed).delete()


def _add_tally(counts: dict[tuple[str, str], int]) -> None:
    for (kind, reason), n in counts.items():
        if not EventTally.objects.filter(kind=kind, reason=reason).update(count=F("count") + n):
            EventTally.objects.create(kind=kind, reason=reason, count=n)


def _fold_tally(rows: list[tuple[int, int, str, str, dt.datetime]]) -> None:
    _add_tally(transitions.tally((row[2], row[3]) for row in rows))


def _lock_cursor() -> tuple[AlertState, Cursor]:
    """The cursor row, locked until the caller's transaction ends.

    The first run starts after the last event already in the log, counting
    the earlier ones into the tally with one aggregate query: deploying the
    evaluator on a platform with history raises no alert about the past.
    """
    row, created = AlertState.objects.select_for_update().get_or_create(key=CURSOR_KEY)
    cursor = Cursor.from_json(row.data)
    if created:
        last = ConnectionEvent.objects.aggregate(last=Max("id"))["last"] or 0
        if last:
            groups = (
                ConnectionEvent.objects.filter(id__lte=last)
                .order_by()
                .values_list("kind", "reason")
                .annotate(n=Count("id"))
            )
            _add_tally({(kind, reason): n for kind, reason, n in groups})
            logger.info("alert evaluator starts after event %s: earlier events raise no alert", last)
        cursor.last_id = last
        row.data = cursor.as_json()
        row.save(update_fields=["data"])
    return row, cursor


def process_events(now: dt.datetime, recipients: Recipients) -> list[int]:
    """Read every event past the cursor; returns new delivery ids."""
    delivery_ids: list[int] = []
    grace = settings.BLAST_ALERT_EVENT_GRACE_S
    while True:
        with transaction.atomic():
            row, cursor = _lock_cursor()
            gaps = cursor.unread_ids()
            query = Q(id__gt=cursor.last_id) | Q(id__in=gaps) if gaps else Q(id__gt=cursor.last_id)
            read = list(
                ConnectionEvent.objects.filter(query)
                .order_by("id")
                .values_list("id", "instance_id", "kind", "reason", "at", "data")[:CHUNK]
            )
            rows = [row[:5] for row in read]
            alerts = _instance_alerts([row[:5] for row in read if not _gateway_outage(row)], now)
            delivery_ids += _create(alerts, recipients)
            _fold_tally(rows)
            cursor.advance([r[0] for r in rows], now.timestamp(), grace)
            row.data, row.updated_at = cursor.as_json(), now
            row.save(update_fields=["data", "updated_at"])
        if len(rows) < CHUNK:
            return delivery_ids


# -- platform conditions --------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    kind: str
    bad: bool
    summary: str
    data: dict[str, Any]


def observe_platform(now: dt.datetime) -> list[Observation]:
    """What the platform conditions look like now (three cheap queries)."""
    counts = count_instances()
    score = counts.score
    threshold = settings.BLAST_ALERT_SCORE_THRESHOLD
    workers = health.live_workers(now)
    jobs, last_run = health.beat_last_run()
    beat_age = (now - last_run).total_seconds() if last_run is not None else None
    beat_bad = jobs == 0 or beat_age is None or beat_age > settings.BLAST_BEAT_STALE_S
    score_data = {"score": score, "threshold": threshold, **counts.as_dict()}
    return [
        Observation(
            AlertKind.SCORE_LOW,
            score < threshold,
            f"health score {score} below {threshold}: {counts.connected} of {counts.expected} "
            f"expected instances connected, {counts.open_breakers} open breakers"
            if score < threshold
            else f"health score back to {score} ({counts.connected} of {counts.expected} connected)",
            score_data,
        ),
        Observation(
            AlertKind.NO_LIVE_WORKER,
            workers["live"] == 0,
            "no live connection worker: no session is held or started"
            if workers["live"] == 0
            else f"{workers['live']} connection worker(s) live again",
            {"live_workers": workers["live"], "sessions_held": workers["sessions"] or 0},
        ),
        Observation(
            AlertKind.BEAT_STALLED,
            beat_bad,
            (
                "no recovery job is scheduled and enabled"
                if jobs == 0
                else "the recovery jobs have never run"
                if beat_age is None
                else f"the recovery jobs last ran {beat_age:.0f}s ago"
            )
            if beat_bad
            else "the recovery jobs are running again",
            {"last_run_at": last_run.isoformat() if last_run else None, "enabled_jobs": jobs},
        ),
    ]


def platform_alerts(observations: list[Observation], now: dt.datetime) -> list[Alert]:
    """Compare with the stored states (locked by the caller); store the new
    ones and return an alert per transition."""
    keys = [f"platform:{o.kind}" for o in observations]
    known = dict(AlertState.objects.filter(key__in=keys).values_list("key", "state"))
    alerts: list[Alert] = []
    for observation, key in zip(observations, keys, strict=True):
        status = transitions.platform_condition(known.get(key), observation.bad)
        if status is None:
            continue
        AlertState.objects.update_or_create(
            key=key, defaults={"state": status, "since": now, "updated_at": now, "data": observation.data}
        )
        alerts.append(
            Alert(
                kind=observation.kind,
                status=status,
                severity=severity_of(observation.kind, status),
                summary=observation.summary[:300],
                data=observation.data,
                created_at=now,
            )
        )
    return alerts


def process_platform(now: dt.datetime, recipients: Recipients) -> list[int]:
    with transaction.atomic():
        _lock_cursor()  # one evaluator at a time
        alerts = platform_alerts(observe_platform(now), now)
        return _create(alerts, recipients)


def evaluate(now: dt.datetime | None = None) -> list[int]:
    """One run of the evaluator; returns the ids of new deliveries."""
    now = now or timezone.now()
    recipients = Recipients.load()
    return process_events(now, recipients) + process_platform(now, recipients)


def raise_alert(
    kind: str,
    status: str,
    summary: str,
    data: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    tenant_id: int | None = None,
) -> tuple[Alert, list[int]]:
    """Record an alert raised outside the evaluator (the health monitor, a
    campaign's guard) and its deliveries: to the platform-wide webhooks, and
    to ``tenant_id``'s when it is about one tenant."""
    now = now or timezone.now()
    alert = Alert(
        kind=kind,
        status=status,
        severity=severity_of(kind, status),
        summary=summary[:300],
        data=data or {},
        created_at=now,
        tenant_id=tenant_id,
    )
    with transaction.atomic():
        ids = _create([alert], Recipients.load())
    return alert, ids
