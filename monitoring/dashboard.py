"""What the live dashboard shows, as JSON-ready sections.

:func:`build_state` is called for the first render of ``/dashboard/`` and
then every ``BLAST_DASHBOARD_POLL_S`` by each open page's WebSocket consumer,
which pushes only the sections that changed. A fixed handful of queries,
whatever the number of instances: aggregate counts, the first
``BLAST_DASHBOARD_MAX_ROWS`` instances (problems first), the first
``PAIRING`` instances awaiting the scan of a QR code (drawn), the latest
events and inbound messages, the snapshots of the chart's window.

A pairing QR code is in the state as SVG, so a new code from the gateway is
a changed section, pushed like any other change. The drawings are cached
(``instances.qr``) and few (``PAIRING``): each is some 5 KB sent to every
open page whenever any code rotates; the admin's change page of an instance
shows its own code whatever the number waiting.

Inbound messages are the campaigns app's (``campaigns.InboundMessage``), a
layer above this one (``blast.layers``): the model is looked up by its label,
as ``/metrics`` counts messages, never imported.

``tenant_id`` None is the platform view (operators); otherwise every query
is filtered to that tenant. :func:`scope_of` says which a user gets, and
refuses anyone else.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from instances import qr
from instances.models import ConnectionEvent, Gateway, Instance, Status, Tenant, WorkerHeartbeat, access_of
from monitoring import health
from monitoring.counts import InstanceCounts, count_instances
from monitoring.models import HealthSnapshot

EVENTS = 30
INBOUND = 30
PAIRING = 12
CHART_POINTS = 360
# Text shown of an event's message or an inbound message.
TEXT_CHARS = 160
INBOUND_MODEL = "campaigns.InboundMessage"

# Problems first in the table: lower sorts first.
STATUS_RANK = {
    Status.CIRCUIT_OPEN: 0,
    Status.HALTED: 1,
    Status.FORBIDDEN: 1,
    Status.LOGGED_OUT: 1,
    Status.REPLACED: 1,
    Status.DISCONNECTED: 2,
    Status.BACKING_OFF: 2,
    Status.CONNECTING: 3,
    Status.AWAITING_QR: 3,
    Status.IDLE: 3,
    Status.CONNECTED: 4,
    Status.STOPPED: 5,
}


def scope_of(user: Any) -> int | None:
    """The tenant id a user's dashboard is limited to: their tenant when they
    are staff tied to one, None (the whole platform) for operators.

    Raises PermissionDenied for anyone else, staff tied to no tenant and not
    marked as operators included (``instances.models.access_of``).
    """
    access = access_of(user)
    if access.operator:
        return None
    if access.tenant is None:
        raise PermissionDenied("Neither an operator nor tied to a tenant.")
    return int(access.tenant.pk)


def _instances(tenant_id: int | None) -> QuerySet[Instance]:
    queryset = Instance.objects.all()
    return queryset if tenant_id is None else queryset.filter(tenant_id=tenant_id)


def summary(tenant_id: int | None, now: dt.datetime) -> tuple[dict[str, Any], InstanceCounts]:
    if tenant_id is None:
        report = health.evaluate(now)
        counts = report.counts or InstanceCounts()
        status = report.status
        checks = [
            {"name": c.name, "status": c.status, "output": c.output, "value": c.observed_value, "unit": c.observed_unit}
            for c in report.checks
        ]
        scope = "platform"
    else:
        counts = count_instances(_instances(tenant_id))
        status = health.score_status(counts.score, settings.BLAST_HEALTH_PASS_SCORE)
        checks = []
        scope = Tenant.objects.filter(id=tenant_id).values_list("name", flat=True).first() or "tenant"
    return (
        {
            "scope": scope,
            "status": status,
            "score": counts.score,
            "pass_score": settings.BLAST_HEALTH_PASS_SCORE,
            "checks": checks,
            **counts.as_dict(),
        },
        counts,
    )


def instance_rows(tenant_id: int | None) -> list[dict[str, Any]]:
    rank = Case(
        *[When(status=status, then=Value(value)) for status, value in STATUS_RANK.items()],
        default=Value(9),
        output_field=IntegerField(),
    )
    rows = (
        _instances(tenant_id)
        .annotate(rank=rank)
        .order_by("rank", "tenant__slug", "name")
        .values(
            "key",
            "name",
            "tenant__slug",
            "status",
            "desired_state",
            "breaker__state",
            "last_reason",
            "status_changed_at",
        )[: settings.BLAST_DASHBOARD_MAX_ROWS]
    )
    return [
        {
            "key": str(row["key"]),
            "name": row["name"],
            "tenant": row["tenant__slug"],
            "status": row["status"],
            "desired": row["desired_state"],
            "breaker": row["breaker__state"] or "closed",
            "reason": row["last_reason"],
            "since": row["status_changed_at"].isoformat(),
        }
        for row in rows
    ]


def recent_events(tenant_id: int | None) -> list[dict[str, Any]]:
    queryset = ConnectionEvent.objects.all()
    if tenant_id is not None:
        queryset = queryset.filter(instance__tenant_id=tenant_id)
    rows = queryset.order_by("-id").values(
        "id", "at", "kind", "reason", "message", "actor", "instance__name", "instance__tenant__slug"
    )[:EVENTS]
    return [
        {
            "id": row["id"],
            "at": row["at"].isoformat(),
            "kind": row["kind"],
            "reason": row["reason"],
            "message": row["message"][:TEXT_CHARS],
            "actor": row["actor"][:60],
            "instance": row["instance__name"],
            "tenant": row["instance__tenant__slug"],
        }
        for row in rows
    ]


def pairing_rows(tenant_id: int | None) -> dict[str, Any]:
    """Instances awaiting the scan of the QR code they hold, each with the
    code drawn: the first ``PAIRING`` by tenant and name; ``more`` says
    whether others wait too."""
    rows = list(
        _instances(tenant_id)
        .filter(status=Status.AWAITING_QR)
        .exclude(qr_code="")
        .order_by("tenant__slug", "name", "id")
        .values("key", "name", "tenant__slug", "qr_code", "qr_expires_at")[: PAIRING + 1]
    )
    return {
        "rows": [
            {
                "key": str(row["key"]),
                "name": row["name"],
                "tenant": row["tenant__slug"],
                "svg": qr.svg_inline(row["qr_code"]),
                "expires_at": row["qr_expires_at"].isoformat() if row["qr_expires_at"] else None,
            }
            for row in rows[:PAIRING]
        ],
        "more": len(rows) > PAIRING,
    }


def inbound_rows(tenant_id: int | None) -> list[dict[str, Any]]:
    """The latest messages the instances received, newest first, their text cut
    to ``TEXT_CHARS``; the sender in full, as the admin shows it."""
    queryset = apps.get_model(INBOUND_MODEL)._default_manager.all()
    if tenant_id is not None:
        queryset = queryset.filter(tenant_id=tenant_id)
    rows = queryset.order_by("-id").values(
        "id", "received_at", "sender", "text", "action", "instance__name", "tenant__slug"
    )[:INBOUND]
    return [
        {
            "id": row["id"],
            "at": row["received_at"].isoformat(),
            "sender": row["sender"],
            "text": row["text"][:TEXT_CHARS],
            "action": row["action"],
            "instance": row["instance__name"],
            "tenant": row["tenant__slug"],
        }
        for row in rows
    ]


def chart(tenant_id: int | None, now: dt.datetime) -> dict[str, Any]:
    hours = settings.BLAST_DASHBOARD_CHART_HOURS
    since = now - dt.timedelta(hours=hours)
    rows = list(
        HealthSnapshot.objects.filter(tenant_id=tenant_id, at__gte=since)
        .order_by("at")
        .values_list("at", "score", "connected", "expected")
    )
    step = max(1, -(-len(rows) // CHART_POINTS))
    points = [
        {"t": at.timestamp(), "score": score, "connected": connected, "expected": expected}
        for at, score, connected, expected in rows[::step]
    ]
    # No "now" in here: the section changes only when a snapshot is added.
    return {"hours": hours, "points": points}


def gateway_rows(tenant_id: int | None) -> list[dict[str, Any]]:
    """Enabled gateways (for a tenant: those its instances use) and their state."""
    gateways = Gateway.objects.filter(enabled=True)
    if tenant_id is not None:
        gateways = gateways.filter(instances__tenant_id=tenant_id).distinct()
    return [
        {
            "name": name,
            "state": state,
            "down_since": since.isoformat() if since else None,
            "reason": reason,
            "next_probe_at": probe.isoformat() if probe else None,
        }
        for name, state, since, reason, probe in gateways.order_by("name").values_list(
            "name", "state", "down_since", "down_reason", "next_probe_at"
        )
    ]


def worker_rows(tenant_id: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    """Live connection workers with their sessions and capacity: operators
    only (a tenant sees none; they are the platform's internals)."""
    if tenant_id is not None:
        return []
    live = WorkerHeartbeat.objects.filter(stopped_at__isnull=True, last_seen__gte=now - health.worker_stale_after())
    return [
        {"worker": worker_id, "host": host, "sessions": held, "capacity": capacity}
        for worker_id, host, held, capacity in live.order_by("worker_id").values_list(
            "worker_id", "host", "sessions_held", "capacity"
        )
    ]


def build_state(tenant_id: int | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every section of the dashboard, JSON-ready."""
    now = now or timezone.now()
    head, counts = summary(tenant_id, now)
    return {
        "summary": head,
        "gateways": gateway_rows(tenant_id),
        "workers": worker_rows(tenant_id, now),
        "instances": {"rows": instance_rows(tenant_id), "total": counts.total},
        "pairing": pairing_rows(tenant_id),
        "events": recent_events(tenant_id),
        "inbound": inbound_rows(tenant_id),
        "chart": chart(tenant_id, now),
    }
