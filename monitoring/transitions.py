"""When an alert fires: the transitions of alert conditions, without I/O.

Alerts fire on transitions only, never repeatedly for one condition.
Instance conditions are driven by the connection events the workers and
beat append (:class:`instances.models.EventKind`); platform conditions by
comparing what is observed now with the last known state. Both are pure
functions of (state before, input) -> (state after, alerts), so their tests
feed events in and read alerts out.

Instance conditions (at most one alert per change):

- ``breaker_open``: fires on ``breaker_opened`` when the breaker was not
  already known open (a failed half-open trial re-opening it is the same
  condition); resolves on ``breaker_closed``, ``reset_breaker`` or ``ready``.
- one per terminal reason (``logged_out``, ``replaced``, ``forbidden``,
  ``client_outdated``, ``unauthorized``, ``not_found``,
  ``multidevice_mismatch``): fires on a ``disconnect`` with that reason
  unless the same reason is already firing; resolves on ``ready``.
- ``temporarily_banned``: fires on a ``disconnect`` with reason
  ``temporarily_banned`` (close code 4402: the network suspended the account
  for a while; the instance waits out the ban) unless already firing;
  resolves on ``ready``.
- ``restricted``: fires on ``restricted`` (the worker paused the instance's
  sending after repeated rate-limit nacks) unless already firing; resolves
  on ``restriction_lifted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from instances.reasons import KINDS, Kind, Reason

FIRING, RESOLVED = "firing", "resolved"
BREAKER_OPEN = "breaker_open"
TERMINAL = "terminal"  # the slot of an instance's terminal condition
TEMPORARILY_BANNED = "temporarily_banned"
RESTRICTED = "restricted"

# The connection event kinds conditions react to (values of
# instances.models.EventKind, spelled out so that this module needs no ORM).
BREAKER_OPENED = "breaker_opened"
BREAKER_CLOSED = "breaker_closed"
RESET_BREAKER = "reset_breaker"
READY = "ready"
DISCONNECT = "disconnect"
RESTRICTION_LIFTED = "restriction_lifted"

TERMINAL_REASONS: frozenset[str] = frozenset(str(r) for r, k in KINDS.items() if k is Kind.TERMINAL)
# Event kinds the instance conditions react to (the evaluator reads all
# events for the counters, but only these can change a condition).
RELEVANT_KINDS = frozenset(
    {BREAKER_OPENED, BREAKER_CLOSED, RESET_BREAKER, READY, DISCONNECT, RESTRICTED, RESTRICTION_LIFTED}
)


@dataclass(frozen=True)
class Change:
    """One alert to raise: ``kind`` went ``status`` (firing or resolved)."""

    kind: str
    status: str
    reason: str = ""


def instance_event(active: dict[str, str], kind: str, reason: str) -> list[Change]:
    """Apply one connection event to an instance's active conditions.

    ``active`` maps a slot (``breaker_open`` or ``terminal``) to its value
    (``open``, or the terminal reason) and is updated in place; the returned
    changes are the alerts to raise, in order.
    """
    changes: list[Change] = []
    if kind == BREAKER_OPENED:
        if BREAKER_OPEN not in active:
            active[BREAKER_OPEN] = "open"
            changes.append(Change(BREAKER_OPEN, FIRING, reason))
    elif kind in (BREAKER_CLOSED, RESET_BREAKER):
        if active.pop(BREAKER_OPEN, None) is not None:
            changes.append(Change(BREAKER_OPEN, RESOLVED, reason))
    elif kind == READY:
        if active.pop(BREAKER_OPEN, None) is not None:
            changes.append(Change(BREAKER_OPEN, RESOLVED))
        previous = active.pop(TERMINAL, None)
        if previous is not None:
            changes.append(Change(previous, RESOLVED, previous))
        if active.pop(TEMPORARILY_BANNED, None) is not None:
            changes.append(Change(TEMPORARILY_BANNED, RESOLVED, TEMPORARILY_BANNED))
    elif kind == DISCONNECT and reason in TERMINAL_REASONS:
        if active.get(TERMINAL) != reason:
            active[TERMINAL] = reason
            changes.append(Change(reason, FIRING, reason))
    elif kind == DISCONNECT and reason == TEMPORARILY_BANNED:
        if TEMPORARILY_BANNED not in active:
            active[TEMPORARILY_BANNED] = reason
            changes.append(Change(TEMPORARILY_BANNED, FIRING, reason))
    elif kind == RESTRICTED:
        if RESTRICTED not in active:
            active[RESTRICTED] = "paused"
            changes.append(Change(RESTRICTED, FIRING, reason))
    elif kind == RESTRICTION_LIFTED:
        if active.pop(RESTRICTED, None) is not None:
            changes.append(Change(RESTRICTED, RESOLVED, reason))
    return changes


def platform_condition(previous: str | None, bad: bool) -> str | None:
    """The alert status to raise for a platform condition, or None.

    ``previous`` is the last known state (``firing``, ``resolved`` or None
    when never evaluated, which counts as resolved: a condition already bad
    at the first evaluation fires).
    """
    if bad and previous != FIRING:
        return FIRING
    if not bad and previous == FIRING:
        return RESOLVED
    return None


# -- the event cursor -----------------------------------------------------------

# Ids skipped in one step by more than this are a jump of the id sequence
# (a database restart), not transactions still open: they are not waited for.
MAX_TRACKED_GAP = 1000


@dataclass
class Cursor:
    """Where the evaluator is in the event log: every id up to ``last_id``
    has been read, except ``gaps`` (id -> when first missed, epoch seconds):
    ids that were not visible when later ids were (a transaction that had
    taken its id but not committed yet). A gap is read as soon as it shows
    up, and forgotten after the grace period (its transaction rolled back).
    """

    last_id: int = 0
    gaps: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> Cursor:
        data = data or {}
        raw_gaps = data.get("gaps") or {}
        gaps = {int(k): float(v) for k, v in raw_gaps.items()} if isinstance(raw_gaps, dict) else {}
        last = data.get("last_id") or 0
        return cls(last_id=int(last) if isinstance(last, int | str) else 0, gaps=gaps)

    def as_json(self) -> dict[str, object]:
        return {"last_id": self.last_id, "gaps": {str(k): v for k, v in sorted(self.gaps.items())}}

    def advance(self, seen: Sequence[int], now: float, grace_s: float) -> None:
        """Note that the ids ``seen`` (ascending) were read at ``now``."""
        seen_set = set(seen)
        self.gaps = {g: t for g, t in self.gaps.items() if g not in seen_set and now - t < grace_s}
        for event_id in seen:
            if event_id <= self.last_id:
                continue
            skipped = event_id - self.last_id - 1
            if 0 < skipped <= MAX_TRACKED_GAP:
                for missing in range(self.last_id + 1, event_id):
                    self.gaps.setdefault(missing, now)
            self.last_id = event_id

    def unread_ids(self) -> list[int]:
        return sorted(self.gaps)


def tally(events: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Count ``(kind, reason)`` pairs."""
    counts: dict[tuple[str, str], int] = {}
    for key in events:
        counts[key] = counts.get(key, 0) + 1
    return counts


def reason_label(reason: str) -> str:
    """A human label for a reason value ("logged_out" -> "logged out")."""
    try:
        return str(Reason(reason)).replace("_", " ")
    except ValueError:
        return reason.replace("_", " ")
