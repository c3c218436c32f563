"""Which live connection worker should hold which instance.

Rendezvous hashing with bounded loads. Every (worker, instance) pair has a
score from a hash of both; an instance ranks the live workers by score
(weighted by their capacities) and belongs to the first of its ranking that
still has room. Room is the worker's share of the running instances, plus
``SLACK``, and never more than its capacity (``BLAST_WORKER_CAPACITY``):

- **even**: no worker is given more than ``(1 + SLACK)`` times its share, so
  with W workers none holds less than ``1 - (W - 1) x SLACK`` times it either
  (with 3 or 4 workers: within 10 % of an even share);
- **stable**: a worker joining takes about its share from the others and
  nothing else moves (an instance moves only if the newcomer ranks first for
  it, or the bounds push it on); a worker leaving hands only its own
  instances to the others, spread by their rankings;
- **computed alike everywhere**: the same live workers and running instances
  give the same placement in every worker and in beat, with no coordinator.
  Instances are placed in id order, so one created later moves no other
  unless the bounds were already pushing instances past their first choice.

Rendezvous hashing over the live workers, rather than claims that workers
race for, because ownership then follows from what everyone can read (the
heartbeats and the instance table): hints and recovery jobs can route an
instance to its owner, and a worker can tell which of its sessions to hand
off, without asking anyone.

Pure: no Django, no Redis, no clock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

SLACK = 0.05
_TWO_64 = float(2**64)


def score(worker_id: str, instance_id: int, capacity: int) -> float:
    """The weighted rendezvous score: ``-capacity / ln(u)`` for a hash ``u``
    in (0, 1), so that each worker ranks first for a share of the instances
    proportional to its capacity."""
    digest = hashlib.blake2b(f"{worker_id}\x00{instance_id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / _TWO_64
    return -capacity / math.log(u)


def ranking(instance_id: int, capacities: Mapping[str, int]) -> list[str]:
    """The live workers in the order ``instance_id`` prefers them."""
    return sorted(capacities, key=lambda w: (-score(w, instance_id, capacities[w]), w))


def limits(count: int, capacities: Mapping[str, int], slack: float = SLACK) -> dict[str, int]:
    """How many of ``count`` running instances each worker may be given."""
    total = sum(capacities.values())
    if total <= 0:
        return {w: 0 for w in capacities}
    return {w: min(c, math.ceil((1 + slack) * count * c / total)) for w, c in capacities.items()}


def assign(instance_ids: Iterable[int], capacities: Mapping[str, int], slack: float = SLACK) -> dict[int, str]:
    """Each running instance's worker. An instance left out has no room
    anywhere: the live workers' capacity is below the running instances."""
    live = {w: c for w, c in capacities.items() if c > 0}
    ids = sorted(set(instance_ids))
    room = limits(len(ids), live, slack)
    placed: dict[int, str] = {}
    if not live:
        return placed
    for instance_id in ids:
        for worker in ranking(instance_id, live):
            if room[worker] > 0:
                room[worker] -= 1
                placed[instance_id] = worker
                break
    return placed


def shares(placement: Mapping[int, str]) -> dict[str, int]:
    """Instances per worker in a placement."""
    counts: dict[str, int] = {}
    for worker in placement.values():
        counts[worker] = counts.get(worker, 0) + 1
    return counts
