"""Should an attempt to connect an instance be made now? The one rule.

Every place that asks reads its answer from here or from its SQL form,
``Instance.objects.attempt_due(now, horizon)`` (instances/models.py), which
selects exactly the rows for which :meth:`Decision.due_by` is true; the test
tests/instances/test_attempt_rule.py runs both over the same table of rows and
demands that they agree. The askers:

- the connection worker, on a hint (``store.Row``): worth taking the lease?
  Or due a little later, at its own jittered time?
- the worker that has just taken the lease (``decisions.before_attempt``);
- the worker that holds the instance's live session (a force retry is
  answered by that session, and its flag is cleared);
- the recovery job that dispatches due retries (the queryset).

The rule, first match wins:

1. desired stopped: never;
2. the row says a session is live (connecting, awaiting a QR scan,
   connected): its owner answers, unless the asker knows better: the owner
   itself (the live session is the attempt; a force retry is consumed by it),
   or a worker that has just taken the lease (nobody stands behind that
   status: it is stale, and the rest of the rule applies);
3. a force retry: now, even while the breaker is open or the retry is not
   due; one attempt, after which the flag is cleared;
4. a terminal status (stopped, logged out, replaced, forbidden, halted): never;
5. the instance's gateway is down (instances.outages): later, at no time of
   its own: the gateway's probe answers for it, and its coming back up
   gives the instance an attempt time;
6. an open breaker whose cooldown has not ended: later, at the cooldown's
   end (or at the retry time, if that is later still): its half-open trial;
7. a retry time in the future: later, at that time;
8. otherwise: now.

The gateway's probe (:attr:`Asker.PROBE`) is a new owner that skips rules
5 to 7: its one attempt asks whether the gateway is back.

Times are epoch seconds; a retry time or a cooldown end equal to ``now`` is
due (``breaker.allows_attempt`` agrees). An open breaker without a cooldown
end (a damaged row) counts as cooled down, as ``breaker.poll`` has it. Pure:
no clock, no database, no Django.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

# Observed statuses (the values of instances.models.Status) in three groups;
# tests/instances/test_attempt_rule.py checks that they cover every status.
WAITING = frozenset({"idle", "disconnected", "backing_off", "circuit_open"})
LIVE = frozenset({"connecting", "awaiting_qr", "connected"})
TERMINAL = frozenset({"stopped", "logged_out", "replaced", "forbidden", "halted"})

RUNNING = "running"
OPEN = "open"  # the open breaker state (instances.breaker.State.OPEN)


class Verdict(enum.StrEnum):
    NOW = "now"
    LATER = "later"  # at Decision.at
    NEVER = "never"
    OWNER = "owner"  # a live session claims the instance: its owner answers


class Why(enum.StrEnum):
    STOPPED = "desired state stopped"
    SESSION_LIVE = "a session is live: its owner answers"
    SESSION_IS_ATTEMPT = "the live session is the attempt"
    FORCED = "force retry"
    TERMINAL = "terminal status"
    GATEWAY_DOWN = "the gateway is down: its probe answers"
    PROBE = "the gateway's probe"
    BREAKER_OPEN = "breaker open until its cooldown ends"
    NOT_DUE = "retry not due yet"
    DUE = "retry due"


class Asker(enum.Enum):
    """Who asks, which decides what a live status in the row means."""

    ANYONE = "anyone"  # the row alone: some worker's session may stand behind a live status
    NEW_OWNER = "new_owner"  # has just taken the lease: a live status is stale
    OWNER = "owner"  # holds the instance's live session
    PROBE = "probe"  # has just taken the lease to probe the instance's down gateway


class AttemptFields(Protocol):
    """The row fields the rule reads (``store.Row`` has them; so does :class:`Fields`)."""

    @property
    def desired_state(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def next_retry_at(self) -> float | None: ...
    @property
    def force_retry(self) -> bool: ...
    @property
    def breaker_state(self) -> str: ...
    @property
    def cooldown_until(self) -> float | None: ...
    @property
    def gateway_down(self) -> bool: ...


@dataclass(frozen=True)
class Fields:
    desired_state: str
    status: str
    next_retry_at: float | None = None
    force_retry: bool = False
    breaker_state: str = "closed"
    cooldown_until: float | None = None
    gateway_down: bool = False


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: Why
    at: float | None = None  # when a LATER attempt falls due
    forced: bool = False  # the attempt uses (or the owner consumes) a force retry

    @property
    def now(self) -> bool:
        return self.verdict is Verdict.NOW

    def due_by(self, horizon: float) -> bool:
        """Due now, or later but no later than ``horizon`` (epoch seconds, >= now)."""
        return self.verdict is Verdict.NOW or (
            self.verdict is Verdict.LATER and self.at is not None and self.at <= horizon
        )


def decide(row: AttemptFields, now: float, asker: Asker = Asker.ANYONE) -> Decision:
    """Whether an attempt for ``row`` should be made at ``now``, later, or never, and why.

    See the module docstring for the rule. ``asker`` says what a live status
    means: for :attr:`Asker.ANYONE` it is another owner's business
    (:attr:`Verdict.OWNER`); for :attr:`Asker.OWNER` the live session itself is
    the attempt (``NEVER``; ``forced`` set when a force retry is consumed); for
    :attr:`Asker.NEW_OWNER` it is stale and ignored.
    """
    if row.desired_state != RUNNING:
        return Decision(Verdict.NEVER, Why.STOPPED)
    if asker is Asker.OWNER:
        return Decision(Verdict.NEVER, Why.SESSION_IS_ATTEMPT, forced=row.force_retry)
    if row.status in LIVE and asker is Asker.ANYONE:
        return Decision(Verdict.OWNER, Why.SESSION_LIVE)
    if row.force_retry:
        return Decision(Verdict.NOW, Why.FORCED, forced=True)
    if row.status in TERMINAL:
        return Decision(Verdict.NEVER, Why.TERMINAL)
    if asker is Asker.PROBE:
        return Decision(Verdict.NOW, Why.PROBE)
    if row.gateway_down:
        return Decision(Verdict.LATER, Why.GATEWAY_DOWN)
    retry_at = row.next_retry_at
    if row.breaker_state == OPEN and row.cooldown_until is not None and row.cooldown_until > now:
        at = row.cooldown_until if retry_at is None else max(row.cooldown_until, retry_at)
        return Decision(Verdict.LATER, Why.BREAKER_OPEN, at=at)
    if retry_at is not None and retry_at > now:
        return Decision(Verdict.LATER, Why.NOT_DUE, at=retry_at)
    return Decision(Verdict.NOW, Why.DUE)
