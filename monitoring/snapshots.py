"""Health snapshots (beat job ``monitoring.record_snapshot``, each minute).

One row for the platform, with the full ``/health`` status, and one per
tenant that has instances, from one aggregate query: the dashboard's chart
of the score and the connected instances over the last hours reads them.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone

from monitoring import health
from monitoring.counts import count_by_tenant
from monitoring.models import HealthSnapshot

logger = logging.getLogger("blast.monitoring")


def record(now: dt.datetime | None = None) -> int:
    """Record the platform's and every tenant's snapshot; returns how many."""
    now = now or timezone.now()
    report = health.evaluate(now)
    counts = report.counts
    if counts is None:
        logger.warning("⚠️ no snapshot: the database does not answer")
        return 0
    workers = report.check("connection-workers:live")
    rows = [
        HealthSnapshot(
            at=now,
            score=counts.score,
            status=report.status,
            total=counts.total,
            expected=counts.expected,
            connected=counts.connected,
            open_breakers=counts.open_breakers,
            by_status=counts.by_status,
            live_workers=workers.observed_value if workers else None,
            sessions_held=workers.extra.get("sessionsHeld") if workers else None,
        )
    ]
    for tenant_id, tenant_counts in count_by_tenant().items():
        rows.append(
            HealthSnapshot(
                at=now,
                tenant_id=tenant_id,
                score=tenant_counts.score,
                total=tenant_counts.total,
                expected=tenant_counts.expected,
                connected=tenant_counts.connected,
                open_breakers=tenant_counts.open_breakers,
                by_status=tenant_counts.by_status,
            )
        )
    HealthSnapshot.objects.bulk_create(rows)
    logger.info(
        "📸 snapshot: %s, score %s, %s/%s connected, %s tenants",
        report.status,
        counts.score,
        counts.connected,
        counts.expected,
        len(rows) - 1,
    )
    return len(rows)
