"""Instance counts for health, metrics, snapshots and the dashboard.

One aggregate query (``GROUP BY desired_state, status, breaker state``) and
a loop over its few dozen groups: the cost does not grow with the number of
instances beyond the database's own scan, so ``/health`` stays cheap at ten
thousand instances.

*Expected to be connected* (the score's denominator) means: desired state
``running`` and observed status not one that waits on the instance's owner,
that is not ``awaiting_qr`` (a QR code is waiting to be scanned),
``logged_out`` (the account was unlinked: pair again), ``replaced`` (the
account was opened elsewhere) or ``forbidden`` (the account is banned).
Every other status of a running instance counts, including ``halted``
(client outdated, bad token, unknown instance: the platform's operators must
act) and the transient ones (``idle``, ``connecting``, ``backing_off``,
``circuit_open``, ``disconnected``, and ``stopped`` while a connect is on its
way). Instances whose desired state is ``stopped`` are never expected.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, QuerySet

from instances.models import BreakerState, DesiredState, Instance, Status
from monitoring import scoring

# Statuses in which an instance waits on its owner, not on the platform.
OWNER_ACTION_STATUSES = frozenset({Status.AWAITING_QR, Status.LOGGED_OUT, Status.REPLACED, Status.FORBIDDEN})


@dataclass(frozen=True)
class InstanceCounts:
    """What the health score and the dashboards are computed from."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    breakers: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    connected: int = 0
    # Open breakers of every instance, and of expected instances only (the
    # score's penalty counts the latter).
    open_breakers: int = 0
    open_breakers_expected: int = 0
    # Desired running, whatever their status: what the workers' capacity must hold.
    running: int = 0

    @property
    def score(self) -> int:
        return scoring.score(self.connected, self.expected, self.open_breakers_expected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "expected": self.expected,
            "connected": self.connected,
            "open_breakers": self.open_breakers,
            "by_status": dict(self.by_status),
            "breakers": dict(self.breakers),
        }


def is_expected(desired_state: str, status: str) -> bool:
    """Whether an instance in this state is expected to be connected."""
    return desired_state == DesiredState.RUNNING and status not in OWNER_ACTION_STATUSES


def _fold(groups: Iterable[tuple[str, str, str | None, int]]) -> InstanceCounts:
    by_status = {str(status): 0 for status in Status}
    breakers = {str(state): 0 for state in BreakerState}
    total = expected = connected = open_all = open_expected = running = 0
    for desired, status, breaker_state, n in groups:
        # An instance without a breaker row has a closed breaker.
        breaker_state = breaker_state or BreakerState.CLOSED
        total += n
        by_status[status] = by_status.get(status, 0) + n
        breakers[breaker_state] = breakers.get(breaker_state, 0) + n
        is_open = breaker_state == BreakerState.OPEN
        open_all += n if is_open else 0
        running += n if desired == DesiredState.RUNNING else 0
        if is_expected(desired, status):
            expected += n
            connected += n if status == Status.CONNECTED else 0
            open_expected += n if is_open else 0
    return InstanceCounts(
        total=total,
        by_status=by_status,
        breakers=breakers,
        expected=expected,
        connected=connected,
        open_breakers=open_all,
        open_breakers_expected=open_expected,
        running=running,
    )


def _grouped(queryset: QuerySet[Instance], *extra: str) -> QuerySet[Any]:
    # order_by() drops Instance.Meta.ordering, which would otherwise be added
    # to the GROUP BY and return one group per instance.
    return (
        queryset.order_by()
        .values(*extra, "desired_state", "status", "breaker__state")
        .annotate(n=Count("id"))
        .values_list(*extra, "desired_state", "status", "breaker__state", "n")
    )


def count_instances(queryset: QuerySet[Instance] | None = None) -> InstanceCounts:
    """Counts over ``queryset`` (all instances by default) in one query.

    Pass ``Instance.objects.filter(tenant=t)`` for one tenant's counts.
    """
    queryset = Instance.objects.all() if queryset is None else queryset
    return _fold(_grouped(queryset))


def count_by_tenant(queryset: QuerySet[Instance] | None = None) -> dict[int, InstanceCounts]:
    """Counts per tenant id, for every tenant that has instances, in one query."""
    queryset = Instance.objects.all() if queryset is None else queryset
    groups: dict[int, list[tuple[str, str, str | None, int]]] = defaultdict(list)
    for tenant_id, desired, status, breaker_state, n in _grouped(queryset, "tenant_id"):
        groups[tenant_id].append((desired, status, breaker_state, n))
    return {tenant_id: _fold(rows) for tenant_id, rows in groups.items()}
