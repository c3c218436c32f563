"""How long to wait before the next connection attempt.

ARCHITECTURE.md "Policies": each reason has its own delay (``timed_out`` waits
longer than other transient reasons, ``restart_required`` reconnects at once),
the delay grows after a run of consecutive failures up to a cap, every delay
carries random jitter so that instances dropped together by one gateway outage
do not reconnect in lockstep, a gateway's ``Retry-After`` is a floor, and
terminal reasons schedule nothing.

Pure: the random source is an argument, and the function returns a number of
seconds; it never sleeps and never reads the clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from instances.reasons import Kind, Reason, kind_of


@dataclass(frozen=True)
class RetryPolicy:
    """The numbers behind :func:`retry_delay` (defaults are the seed's).

    Raises ``ValueError`` on values the settings would also refuse: negative
    delays or windows, a growth factor below 1, jitter outside [0, 1].
    """

    timeout_delay_s: float = 30.0  # settings.BLAST_RETRY_DELAY_TIMEOUT_S
    delay_s: float = 15.0  # BLAST_RETRY_DELAY_S
    growth_after: int = 5  # BLAST_RETRY_GROWTH_AFTER
    growth_factor: float = 1.5  # BLAST_RETRY_GROWTH_FACTOR
    max_delay_s: float = 60.0  # BLAST_RETRY_MAX_DELAY_S
    jitter: float = 0.2  # BLAST_RETRY_JITTER (fraction)
    ban_pause_s: float = 3600.0  # BLAST_BAN_PAUSE_S
    restart_burst: int = 3  # immediate restarts allowed within restart_window_s
    restart_window_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("timeout_delay_s", "delay_s", "max_delay_s", "ban_pause_s", "restart_window_s"):
            value = getattr(self, name)
            # `not value >= 0` also refuses NaN, which every comparison fails.
            if not value >= 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {value!r}")
        if self.growth_after < 0:
            raise ValueError(f"RetryPolicy.growth_after must be >= 0, got {self.growth_after!r}")
        if not self.growth_factor >= 1:
            raise ValueError(f"RetryPolicy.growth_factor must be >= 1, got {self.growth_factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter!r}")
        if self.restart_burst < 0:
            raise ValueError(f"RetryPolicy.restart_burst must be >= 0, got {self.restart_burst!r}")

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        """The policy configured in Django settings (``BLAST_RETRY_*``, ``BLAST_BAN_PAUSE_S``).

        The restart burst has no setting: it guards against a gateway bug,
        it is not a tuning knob.
        """
        from django.conf import settings

        return cls(
            timeout_delay_s=float(settings.BLAST_RETRY_DELAY_TIMEOUT_S),
            delay_s=float(settings.BLAST_RETRY_DELAY_S),
            growth_after=int(settings.BLAST_RETRY_GROWTH_AFTER),
            growth_factor=float(settings.BLAST_RETRY_GROWTH_FACTOR),
            max_delay_s=float(settings.BLAST_RETRY_MAX_DELAY_S),
            jitter=float(settings.BLAST_RETRY_JITTER),
            ban_pause_s=float(settings.BLAST_BAN_PAUSE_S),
        )


def retry_delay(
    reason: Reason,
    failures: int,
    policy: RetryPolicy,
    *,
    rand: Callable[[], float] = random.random,
    retry_after: float | None = None,
    recent_restarts: int = 0,
) -> float | None:
    """Seconds to wait before the next attempt after a session ended for ``reason``.

    ``failures`` is the number of consecutive failed attempts, this one
    included (values below 1 are treated as 1). ``rand`` returns a float in
    [0, 1) (values outside are clamped); it is called at most once.
    ``retry_after`` is the gateway's ``Retry-After`` in seconds.
    ``recent_restarts`` is how many immediate restarts this instance made
    within ``policy.restart_window_s`` (see :func:`restarts_in_window`).

    Returns None ("schedule nothing") for terminal and clean reasons.
    Otherwise, by the reason's kind:

    - RESTART: 0.0 while ``recent_restarts < restart_burst``; beyond that,
      as TRANSIENT, so a gateway sending 4515 in a loop cannot make a tight
      reconnect loop.
    - REPAIR: 0.0 on the first failure (reconnect for a new QR), then as
      TRANSIENT.
    - LONG_PAUSE: ``ban_pause_s`` jittered upward only, within
      [ban_pause_s, ban_pause_s * (1 + jitter)], never shorter than the ban.
    - TRANSIENT: a base of ``timeout_delay_s`` for ``timed_out`` and
      ``delay_s`` otherwise; once ``failures > growth_after`` it is
      multiplied by ``growth_factor ** (failures - growth_after)``. The
      nominal delay ``d`` is that, capped at ``max_delay_s``. The result is
      uniform in [d * (1 - jitter), min(d * (1 + jitter), max_delay_s)]: it
      never exceeds the cap, and instances at the cap still spread out
      below it instead of all waking together.

    ``retry_after`` is a floor applied last, and may exceed ``max_delay_s``.
    """
    kind = kind_of(reason)
    if kind is Kind.TERMINAL or kind is Kind.CLEAN:
        return None
    failures = max(failures, 1)
    delay: float
    if kind is Kind.RESTART and recent_restarts < policy.restart_burst:
        delay = 0.0
    elif kind is Kind.REPAIR and failures <= 1:
        delay = 0.0
    elif kind is Kind.LONG_PAUSE:
        delay = policy.ban_pause_s * (1.0 + policy.jitter * _unit(rand))
    else:
        nominal = nominal_delay(reason, failures, policy)
        low = nominal * (1.0 - policy.jitter)
        high = min(nominal * (1.0 + policy.jitter), policy.max_delay_s)
        delay = low + (high - low) * _unit(rand)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


def nominal_delay(reason: Reason, failures: int, policy: RetryPolicy) -> float:
    """The un-jittered delay of a transient retry: base, growth, then the cap.

    The centre of the jitter range of :func:`retry_delay` for transient
    reasons (and for restart and re-pair once they fall back to transient).
    """
    base = policy.timeout_delay_s if reason is Reason.TIMED_OUT else policy.delay_s
    cap = policy.max_delay_s
    if base >= cap:
        return cap
    steps = failures - policy.growth_after
    if steps <= 0 or base == 0 or policy.growth_factor == 1:
        return base
    try:
        grown = base * policy.growth_factor**steps
    except OverflowError:
        # 1.5 ** 10_000 does not fit in a float; the cap was reached long ago.
        return cap
    return min(grown, cap)


def restarts_in_window(restarted_at: Iterable[float], now: float, policy: RetryPolicy) -> int:
    """How many of the restart times (epoch seconds) fall within ``restart_window_s`` of ``now``.

    The ``recent_restarts`` argument of :func:`retry_delay`. A restart of age
    exactly ``restart_window_s`` still counts.
    """
    return sum(1 for t in restarted_at if now - t <= policy.restart_window_s)


def _unit(rand: Callable[[], float]) -> float:
    # A custom source that strays outside [0, 1] must not break the bounds
    # that the callers (and the jitter's purpose) rely on.
    # `not value >= 0` also catches NaN.
    value = rand()
    if not value >= 0.0:
        return 0.0
    return min(value, 1.0)
