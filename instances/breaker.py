"""The per-instance circuit breaker, as pure state transitions.

ARCHITECTURE.md "Policies": closed until ``threshold`` failures fall within a
sliding window; then open, and no attempt is made; after the cooldown it goes
half-open and one trial attempt is made. The trial succeeds only once its
session has stayed ready for ``flap_window_s`` (:func:`trial_survived`):
that closes the breaker (window cleared); a trial that fails, or drops
sooner, opens it again, so a flapping number gets one attempt per cooldown. Operators can force a retry (one attempt
even while open) and reset the breaker (closed, window cleared).

A :class:`Breaker` is an immutable value. Every function takes the breaker,
the event and ``now`` (epoch seconds) and returns the new breaker together
with the :class:`Transition` it made, if any, for the caller to persist (the
``CircuitBreaker`` model), log and alert on. Nothing here reads the clock,
the database or a socket.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from instances.reasons import Kind, Reason, kind_of


class State(enum.StrEnum):
    """Breaker states; the same values as ``instances.models.BreakerState``."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Transition(enum.StrEnum):
    """A change of state worth logging and alerting on."""

    OPENED = "opened"
    HALF_OPENED = "half_opened"
    CLOSED = "closed"


@dataclass(frozen=True)
class BreakerPolicy:
    """The numbers behind the breaker (defaults are the seed's).

    ``threshold`` failures within ``window_s`` open it; it stays open for
    ``cooldown_s``; a session that drops less than ``flap_window_s`` after
    ``ready`` counts as a failure. Raises ``ValueError`` for a threshold
    below 1 or a negative (or NaN) duration.
    """

    threshold: int = 10  # settings.BLAST_BREAKER_THRESHOLD
    window_s: float = 300.0  # BLAST_BREAKER_WINDOW_S
    cooldown_s: float = 600.0  # BLAST_BREAKER_COOLDOWN_S
    flap_window_s: float = 30.0  # BLAST_FLAP_WINDOW_S

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"BreakerPolicy.threshold must be >= 1, got {self.threshold!r}")
        for name in ("window_s", "cooldown_s", "flap_window_s"):
            value = getattr(self, name)
            # `not value >= 0` also refuses NaN, which every comparison fails.
            if not value >= 0:
                raise ValueError(f"BreakerPolicy.{name} must be >= 0, got {value!r}")

    @classmethod
    def from_settings(cls) -> BreakerPolicy:
        """The policy configured in Django settings (``BLAST_BREAKER_*``, ``BLAST_FLAP_WINDOW_S``)."""
        from django.conf import settings

        return cls(
            threshold=int(settings.BLAST_BREAKER_THRESHOLD),
            window_s=float(settings.BLAST_BREAKER_WINDOW_S),
            cooldown_s=float(settings.BLAST_BREAKER_COOLDOWN_S),
            flap_window_s=float(settings.BLAST_FLAP_WINDOW_S),
        )


@dataclass(frozen=True)
class Breaker:
    """One instance's breaker.

    ``failures`` holds the epoch seconds of the failures still inside the
    window, oldest first (at most ``threshold`` of them once a function of
    this module has touched it). ``opened_at`` and ``cooldown_until`` describe
    the latest trip; an OPEN breaker always has ``cooldown_until``.
    ``trip_count`` counts every opening, and survives :func:`reset`.

    ``state`` may be given as its string value and ``failures`` as any
    sequence of numbers (as loaded from the database): both are normalised.
    """

    state: State = State.CLOSED
    failures: tuple[float, ...] = ()
    opened_at: float | None = None
    cooldown_until: float | None = None
    trip_count: int = 0

    def __post_init__(self) -> None:
        # Rows come from a CharField and a JSONField list; normalise them so
        # comparisons (`is State.OPEN`) and ordering hold for every caller.
        object.__setattr__(self, "state", State(self.state))
        object.__setattr__(self, "failures", tuple(sorted(float(t) for t in self.failures)))


def failures_in_window(b: Breaker, now: float, policy: BreakerPolicy) -> int:
    """How many recorded failures are inside the window at ``now``.

    A failure of age ``window_s`` still counts; one a moment older does not.
    """
    return sum(1 for t in b.failures if now - t <= policy.window_s)


def record_failure(b: Breaker, now: float, policy: BreakerPolicy) -> tuple[Breaker, Transition | None]:
    """Record a failed attempt at ``now``.

    - CLOSED: the failure joins the window; the ``threshold``-th failure
      inside the window opens the breaker (OPENED): ``opened_at`` = now,
      ``cooldown_until`` = now + ``cooldown_s``, ``trip_count`` + 1.
    - HALF_OPEN: the trial failed; open again (OPENED), as above.
    - OPEN: a forced retry failed; stay open and restart the cooldown from
      now, no transition. (Call :func:`poll` before a trial attempt, so that
      a trial's failure is recorded from HALF_OPEN and counted as a trip.)
    """
    failures = _window((*b.failures, now), now, policy)
    if b.state is State.OPEN:
        return replace(b, failures=failures, cooldown_until=now + policy.cooldown_s), None
    if b.state is State.CLOSED and len(failures) < policy.threshold:
        return replace(b, failures=failures), None
    opened = replace(
        b,
        state=State.OPEN,
        failures=failures,
        opened_at=now,
        cooldown_until=now + policy.cooldown_s,
        trip_count=b.trip_count + 1,
    )
    return opened, Transition.OPENED


def record_success(b: Breaker, now: float, policy: BreakerPolicy) -> tuple[Breaker, Transition | None]:
    """Record a successful attempt at ``now``.

    - CLOSED: no transition, and the window is NOT cleared (only aged): a
      session that flaps between ready and a drop must not escape the
      breaker by succeeding in between.
    - HALF_OPEN (the trial worked) or OPEN (a forced retry worked): close,
      window cleared (CLOSED).

    The worker records a trial's success through :func:`trial_survived`,
    once the session has stayed ready for ``flap_window_s``.
    """
    if b.state is State.CLOSED:
        return replace(b, failures=_window(b.failures, now, policy)), None
    return _closed(b), Transition.CLOSED


def trial_survived(
    b: Breaker, ready_at: float | None, now: float, policy: BreakerPolicy
) -> tuple[Breaker, Transition | None]:
    """Close a HALF_OPEN (trial) or OPEN (forced retry) breaker whose
    session has been ready since ``ready_at`` for at least ``flap_window_s``
    at ``now``; anything else is returned unchanged.

    ``ready`` alone proves nothing: a flapping account reaches it and drops
    seconds later. Closing then would clear the window and give it
    ``threshold`` more attempts per cooldown. A trial that drops sooner stays
    HALF_OPEN, and its drop counts as a failure (:func:`counts_as_failure`):
    :func:`record_failure` opens it again.
    """
    if b.state is State.CLOSED or ready_at is None or now - ready_at < policy.flap_window_s:
        return b, None
    return record_success(b, now, policy)


def poll(b: Breaker, now: float, policy: BreakerPolicy) -> tuple[Breaker, Transition | None]:
    """Advance time: an OPEN breaker whose cooldown has ended goes HALF_OPEN.

    The cooldown has ended at ``cooldown_until`` exactly. An OPEN breaker
    without ``cooldown_until`` (a damaged row) goes HALF_OPEN too, rather than
    staying shut forever. Any other breaker is returned unchanged.
    """
    if b.state is State.OPEN and (b.cooldown_until is None or now >= b.cooldown_until):
        return replace(b, state=State.HALF_OPEN), Transition.HALF_OPENED
    return b, None


def allows_attempt(b: Breaker, now: float) -> bool:
    """Whether a connection attempt may be made at ``now`` (forced retries aside).

    CLOSED and HALF_OPEN (its one trial) allow it; OPEN does not before
    ``cooldown_until``. Only one session per instance exists cluster-wide, so
    "one trial" needs no counter here.
    """
    if b.state is not State.OPEN:
        return True
    return b.cooldown_until is None or now >= b.cooldown_until


def reset(b: Breaker) -> tuple[Breaker, Transition | None]:
    """An operator's reset: CLOSED, window cleared, no cooldown; ``trip_count`` kept.

    Returns the CLOSED transition unless the breaker was already closed.
    """
    transition = None if b.state is State.CLOSED else Transition.CLOSED
    return _closed(b), transition


def counts_as_failure(reason: Reason, ready_at: float | None, now: float, policy: BreakerPolicy) -> bool:
    """Whether a session that ended at ``now`` for ``reason`` is a breaker failure.

    Transient, re-pair and long-pause reasons count when the session never
    reached ready (``ready_at`` None) or dropped less than ``flap_window_s``
    after it (exactly ``flap_window_s`` does not count). Restart, clean and
    terminal reasons never count: a restart is routine, a clean end is the
    platform's own doing, and a terminal reason schedules nothing to guard.
    """
    if kind_of(reason) not in (Kind.TRANSIENT, Kind.REPAIR, Kind.LONG_PAUSE):
        return False
    return ready_at is None or now - ready_at < policy.flap_window_s


def _window(failures: tuple[float, ...], now: float, policy: BreakerPolicy) -> tuple[float, ...]:
    # Only the newest `threshold` failures can ever matter: once that many are
    # inside the window the breaker opens. Keeping no more bounds the row size.
    kept = sorted(t for t in failures if now - t <= policy.window_s)
    return tuple(kept[-policy.threshold :])


def _closed(b: Breaker) -> Breaker:
    return replace(b, state=State.CLOSED, failures=(), opened_at=None, cooldown_until=None)
