"""What happens to an instance when its session ends, is claimed, or is ready.

Pure glue between the reason classifier, the retry policy and the breaker:
events and ``now`` go in, the instance's next observed state comes out. The
worker carries the result to the database and to the socket.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from instances import attempts
from instances import breaker as breakers
from instances.attempts import Asker, AttemptFields, Verdict, Why
from instances.backoff import RetryPolicy, retry_delay
from instances.breaker import Breaker, BreakerPolicy, Transition
from instances.reasons import GATEWAY_REASONS, Kind, Reason, kind_of


@dataclass(frozen=True)
class Policies:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    @classmethod
    def from_settings(cls) -> Policies:
        return cls(retry=RetryPolicy.from_settings(), breaker=BreakerPolicy.from_settings())


# Observed statuses (the values of instances.models.Status), kept as plain
# strings so this module needs no Django.
CONNECTING = "connecting"
DISCONNECTED = "disconnected"
BACKING_OFF = "backing_off"
CIRCUIT_OPEN = "circuit_open"
STOPPED = "stopped"

TERMINAL_STATUS_BY_REASON = {
    Reason.LOGGED_OUT: "logged_out",
    Reason.REPLACED: "replaced",
    Reason.FORBIDDEN: "forbidden",
}
HALTED = "halted"


@dataclass(frozen=True)
class SessionEnd:
    """How a session ended, as the session saw it."""

    reason: Reason
    message: str = ""
    ready_at: float | None = None  # epoch seconds of `ready`, None if it never came
    retry_after: float | None = None


@dataclass(frozen=True)
class Outcome:
    status: str
    retry_count: int
    next_retry_at: float | None  # epoch seconds; None schedules nothing
    breaker: Breaker
    transition: Transition | None
    failure: bool  # counted against the breaker
    reconnect_now: bool  # reconnect inside the worker, keeping the lease
    unpair: bool
    delay: float | None


def after_session(
    end: SessionEnd,
    *,
    retry_count: int,
    breaker: Breaker,
    desired_running: bool,
    recent_restarts: int,
    now: float,
    policies: Policies,
    rand: Callable[[], float] = random.random,
    gateway_down: bool = False,
) -> Outcome:
    """Decide what follows a session that ended with ``end``.

    ``gateway_down``: the instance's gateway is down (instances.outages); a
    gateway-level failure then is the gateway's, not the instance's: it does
    not count toward the breaker or the retry count.
    """
    kind = kind_of(end.reason)
    # A trial (or forced retry) that stayed ready long enough succeeded, even
    # when the session ends before the worker's own check of it.
    breaker, survived = breakers.trial_survived(breaker, end.ready_at, now, policies.breaker)

    def outcome(status: str, **changes: object) -> Outcome:
        values: dict[str, object] = {
            "status": status,
            "retry_count": retry_count,
            "next_retry_at": None,
            "breaker": breaker,
            "transition": survived,
            "failure": False,
            "reconnect_now": False,
            "unpair": False,
            "delay": None,
        }
        values.update(changes)
        return Outcome(**values)  # type: ignore[arg-type]

    if not desired_running or end.reason is Reason.STOPPED:
        return outcome(STOPPED, retry_count=0)
    if kind is Kind.CLEAN:
        # The worker let go (lost lease, shutdown): not the instance's fault.
        # Due at once, so that another owner picks it up on the next hint.
        return outcome(DISCONNECTED, next_retry_at=now, delay=0.0)
    if kind is Kind.TERMINAL:
        status = TERMINAL_STATUS_BY_REASON.get(end.reason, HALTED)
        return outcome(status, unpair=end.reason is Reason.LOGGED_OUT)
    if kind is Kind.RESTART:
        delay = retry_delay(end.reason, max(retry_count, 1), policies.retry, rand=rand, recent_restarts=recent_restarts)
        assert delay is not None
        if delay == 0:
            return outcome(CONNECTING, reconnect_now=True, delay=0.0)
        return outcome(BACKING_OFF, next_retry_at=now + delay, delay=delay)

    # Transient, re-pair and long-pause reasons: an attempt follows.
    outage = gateway_down and end.reason in GATEWAY_REASONS
    failure = not outage and breakers.counts_as_failure(end.reason, end.ready_at, now, policies.breaker)
    transition: Transition | None = survived
    if failure:
        breaker, transition = breakers.record_failure(breaker, now, policies.breaker)
    if not outage:
        retry_count += 1
    unpair = end.reason is Reason.BAD_SESSION
    if breaker.state is breakers.State.OPEN:
        return outcome(
            CIRCUIT_OPEN,
            retry_count=retry_count,
            next_retry_at=breaker.cooldown_until,
            breaker=breaker,
            transition=transition,
            failure=failure,
            unpair=unpair,
        )
    delay = retry_delay(end.reason, retry_count, policies.retry, rand=rand, retry_after=end.retry_after)
    assert delay is not None
    return outcome(
        CONNECTING if delay == 0 else BACKING_OFF,
        retry_count=retry_count,
        next_retry_at=None if delay == 0 else now + delay,
        breaker=breaker,
        transition=transition,
        failure=failure,
        reconnect_now=delay == 0,
        unpair=unpair,
        delay=delay,
    )


@dataclass(frozen=True)
class ClaimDecision:
    attempt: bool
    breaker: Breaker
    transition: Transition | None  # HALF_OPENED when the cooldown just ended
    forced: bool
    verdict: Verdict = Verdict.NOW
    why: Why = Why.DUE


def before_attempt(
    row: AttemptFields, breaker: Breaker, now: float, policies: Policies, *, probe: bool = False
) -> ClaimDecision:
    """May a worker that has just taken the lease make an attempt now?

    The attempt rule (instances.attempts) as a new owner asks it: a live
    status in the row is stale, a force retry makes one attempt even while the
    breaker is open or the retry is not due, otherwise the retry must be due
    and the breaker must allow it (closed, half-open for its one trial, or
    open with its cooldown over). Unless the answer is never, the breaker is
    advanced to ``now`` (an ended cooldown becomes HALF_OPENED, for the
    caller to record). A ``probe`` of the instance's down gateway asks as
    :attr:`Asker.PROBE`: one attempt, whatever the breaker and retry time say.
    """
    decision = attempts.decide(row, now, Asker.PROBE if probe else Asker.NEW_OWNER)
    if decision.verdict is Verdict.NEVER:
        return ClaimDecision(False, breaker, None, forced=False, verdict=decision.verdict, why=decision.why)
    breaker, transition = breakers.poll(breaker, now, policies.breaker)
    return ClaimDecision(
        decision.now, breaker, transition, forced=decision.forced, verdict=decision.verdict, why=decision.why
    )


def after_ready(breaker: Breaker, *, now: float, policies: Policies) -> tuple[Breaker, Transition | None]:
    """`ready` arrived: the retry count resets, a closed breaker's window
    ages. A trial (half-open, or open for a forced retry) is not a success
    yet: :func:`trial_check` closes it once the session has stayed ready for
    the flap window."""
    if breaker.state is not breakers.State.CLOSED:
        return breaker, None
    return breakers.record_success(breaker, now, policies.breaker)


def trial_check(
    breaker: Breaker, *, ready_at: float, now: float, policies: Policies
) -> tuple[Breaker, Transition | None]:
    """The session of a trial is still ready at ``now``: CLOSED once it has
    been for the flap window (see :func:`instances.breaker.trial_survived`)."""
    return breakers.trial_survived(breaker, ready_at, now, policies.breaker)
