"""Inbound bursts: many ``inbound`` frames from one control call, paced by the simulator.

One control call per inbound message (``POST /_control/instances/{key}/inbound``)
costs the caller an HTTP round trip each, which caps a benchmark's driver far
below the rates it means to offer. A burst is one call: the simulator itself
sends ``count`` frames at ``rate`` per second from its own event loop, round
robin over the instances named, each on the instance's ready session at that
moment (an instance without one at its turn is counted as ``skipped``).

Every frame is an ordinary PROTOCOL.md ``inbound {server_id, from, text}``.
Its text is ``<text> <burst>:<n> @<epoch seconds>``: the sequence number makes
each message traceable, and the wall-clock time the frame was written lets a
receiver on the same machine measure the lag from the gateway to wherever the
message lands (a database row, a webhook). Senders are valid mobile numbers, a
different one per message, so the platform does the same work as for real ones.

The pacing is pure (:func:`due`); :func:`run` is the thin loop around it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.state import Instance

logger = logging.getLogger(__name__)

# How long the loop sleeps between two looks at the clock: at 1,000 frames a
# second that is ten frames at a time, each stamped when it is written.
TICK_S = 0.01
MAX_COUNT = 10_000_000
MAX_RATE = 100_000.0


@dataclass(eq=False)
class Burst:
    """One burst: what was asked, and how far it got."""

    id: int
    instances: Sequence[Instance]
    count: int
    rate: float
    text: str
    sender: str | None = None  # None: a different number per message
    sent: int = 0
    skipped: int = 0  # frames whose instance had no ready session at their turn
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.sent + self.skipped >= self.count

    def as_json(self) -> dict[str, Any]:
        return {
            "burst": self.id,
            "instances": len(self.instances),
            "count": self.count,
            "rate": self.rate,
            "sent": self.sent,
            "skipped": self.skipped,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "done": self.done,
        }


def due(elapsed_s: float, rate: float, count: int) -> int:
    """How many frames should be out ``elapsed_s`` seconds after the first.

    The first goes at once and frame ``n`` at ``n / rate``, so a burst of
    ``count`` lasts ``(count - 1) / rate`` seconds.
    """
    if elapsed_s < 0:
        return 0
    return min(count, math.floor(elapsed_s * rate) + 1)


def sender_of(n: int) -> str:
    """The sender of message ``n``: a valid Brazilian mobile number (São Paulo)."""
    return f"+55119{n % 10**8:08d}"


def stamped_text(text: str, burst_id: int, n: int, at: float) -> str:
    """``<text> <burst>:<n> @<epoch seconds>``: what message ``n`` says."""
    return f"{text} {burst_id}:{n} @{at:.6f}"


def parse_stamp(text: str) -> tuple[int, int, float] | None:
    """(burst, n, sent at) from a text :func:`stamped_text` wrote, or None."""
    head, _, at = text.rpartition(" @")
    _, _, tag = head.rpartition(" ")
    burst, _, n = tag.partition(":")
    try:
        return int(burst), int(n), float(at)
    except ValueError:
        return None


async def run(burst: Burst, new_server_id: Callable[[], str], clock: Callable[[], float] = time.time) -> None:
    """Send ``burst``'s frames on schedule; the burst records its progress."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    burst.started_at = clock()
    logger.info(
        "BURST started burst=%d instances=%d count=%d rate=%g",
        burst.id,
        len(burst.instances),
        burst.count,
        burst.rate,
    )
    while not burst.done:
        target = due(loop.time() - start, burst.rate, burst.count)
        while burst.sent + burst.skipped < target:
            await _send_next(burst, new_server_id, clock)
        if not burst.done:
            await asyncio.sleep(TICK_S)
    burst.finished_at = clock()
    logger.info(
        "BURST done burst=%d sent=%d skipped=%d seconds=%.3f",
        burst.id,
        burst.sent,
        burst.skipped,
        burst.finished_at - burst.started_at,
    )


async def _send_next(burst: Burst, new_server_id: Callable[[], str], clock: Callable[[], float]) -> None:
    n = burst.sent + burst.skipped
    session = burst.instances[n % len(burst.instances)].ready_session()
    if session is None:
        burst.skipped += 1
        return
    frame = {
        "type": "inbound",
        "server_id": new_server_id(),
        "from": burst.sender or sender_of(n),
        "text": stamped_text(burst.text, burst.id, n, clock()),
    }
    if await session.send(frame):
        burst.sent += 1
    else:
        burst.skipped += 1
