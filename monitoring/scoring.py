"""The health score: one number, 0-100, for "are the sessions up?".

Pure: it takes counts and returns a number, so the platform (``/health``,
snapshots, alerts, metrics) and the tenant API compute a tenant's score with
the same function. Who counts as *expected* is decided by the caller
(:mod:`monitoring.counts` documents the platform's definition); this module
only combines the three numbers:

    availability = 100 * connected / expected
    penalty      = min(BREAKER_PENALTY_CAP,
                       100 * BREAKER_WEIGHT * open_breakers / expected)
    score        = floor(availability - penalty), clamped to 0..100

An open breaker is already counted once as an instance that is not
connected; the penalty counts it again at ``BREAKER_WEIGHT`` (half an
instance), because a tripped breaker means the platform has stopped trying,
not merely that a retry is pending. The penalty is relative to ``expected``
so that ten open breakers among ten thousand instances barely move the
score, and capped so that breakers alone never outweigh availability.

The arithmetic is exact (fractions, then floor): 80 means at least 80, never
79.999 rounded up, which matters because 80 is where ``pass`` begins
(``BLAST_HEALTH_PASS_SCORE``: :func:`monitoring.health.score_status`).
With nothing expected to be connected, the score is 100: nothing is wrong.
"""

from __future__ import annotations

import math
from fractions import Fraction

MAX_SCORE = 100
# Each open breaker costs this fraction of one instance, on top of not being
# connected...
BREAKER_WEIGHT = Fraction(1, 2)
# ...and all open breakers together cost at most this many points.
BREAKER_PENALTY_CAP = 20


def score(connected: int, expected: int, open_breakers: int) -> int:
    """The health score, 0-100, of ``connected`` out of ``expected`` instances
    with ``open_breakers`` of them behind an open circuit breaker.

    ``connected`` above ``expected`` is clamped (an instance being stopped may
    still be connected for a moment); negative counts are treated as zero.
    """
    expected = max(0, expected)
    connected = min(max(0, connected), expected)
    open_breakers = max(0, open_breakers)
    if expected == 0:
        return MAX_SCORE
    base = Fraction(MAX_SCORE * connected, expected)
    penalty = min(Fraction(BREAKER_PENALTY_CAP), MAX_SCORE * BREAKER_WEIGHT * open_breakers / expected)
    return max(0, min(MAX_SCORE, math.floor(base - penalty)))
