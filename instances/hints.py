"""Hints over the channel layer: "reconcile these instances now".

A hint only makes reconciliation fast; losing one loses nothing, because the
beat jobs find every instance whose observed state lags its desired state.
Channel-layer delivery is at most once and a channel holds a bounded number
of messages, so hints are batched (one message names many instances) and a
full channel is logged, never raised.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from instances import membership, placement

logger = logging.getLogger("blast.hints")

MESSAGE_TYPE = "instances.reconcile"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def worker_channel(common: str, worker_id: str) -> str:
    """The channel a single worker listens on beside the common one."""
    return f"{common}.w.{_UNSAFE.sub('-', worker_id)}"[:99]


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


async def send_async(layer: Any, ids: Iterable[int], channel: str, batch: int, forwarded: bool = False) -> int:
    """Send hints naming ``ids``; returns how many messages went out.

    ``forwarded``: sent by a worker to the worker that should hold them,
    which takes them without forwarding them again (one hop at most, even
    while two workers' views of the cluster differ for a moment)."""
    unique = sorted(set(ids))
    sent = 0
    message: dict[str, Any] = {"type": MESSAGE_TYPE}
    if forwarded:
        message["forwarded"] = True
    for chunk in _chunks(unique, batch):
        try:
            await layer.send(channel, {**message, "ids": chunk})
            sent += 1
        except ChannelFull:
            logger.warning("⚠️ channel %s is full; %d instances left to the recovery jobs", channel, len(chunk))
        except (RedisError, OSError):
            logger.warning("⚠️ hint to %s failed; %d instances left to the recovery jobs", channel, len(chunk))
    return sent


def send(ids: Iterable[int], channel: str | None = None) -> int:
    """Synchronous :func:`send_async` for views, commands and beat jobs.

    Without a ``channel``, each instance goes to the live worker that should
    hold it (``instances.placement``: its first-ranked worker; a worker that
    places it elsewhere forwards it once), or to the common channel while no
    worker is known."""
    ids = list(ids)
    if not ids:
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0
    routes = {channel: ids} if channel is not None else route(ids)
    return sum(
        int(async_to_sync(send_async)(layer, chunk, target, settings.BLAST_HINT_BATCH))
        for target, chunk in routes.items()
    )


_members: tuple[str, float, dict[str, int]] = ("", 0.0, {})
MEMBERS_CACHE_S = 1.0


def live_workers() -> dict[str, int]:
    """The live workers and their capacities, read at most once a second."""
    global _members
    prefix, read_at, members = _members
    now = time.monotonic()
    if prefix == settings.BLAST_REDIS_PREFIX and now - read_at < MEMBERS_CACHE_S:
        return members
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        try:
            members = membership.live_sync(client, settings.BLAST_REDIS_PREFIX, liveness_s())
        finally:
            client.close()
    except (RedisError, OSError):
        members = {}
    _members = (settings.BLAST_REDIS_PREFIX, now, members)
    return members


def liveness_s() -> float:
    """How long a worker stays live after its last beat (one a second):
    half the lease TTL, so that a killed worker's instances are routed to the
    others by the time its leases expire, and never under three beats."""
    return max(3.0, float(settings.BLAST_LEASE_TTL_S) / 2)


def route(ids: Sequence[int]) -> dict[str, list[int]]:
    """Channel -> the instances to hint there."""
    members = live_workers()
    if not members:
        return {settings.BLAST_WORKER_CHANNEL: list(ids)}
    routes: dict[str, list[int]] = {}
    for instance_id in ids:
        owner = placement.ranking(instance_id, members)[0]
        routes.setdefault(worker_channel(settings.BLAST_WORKER_CHANNEL, owner), []).append(instance_id)
    return routes


def is_forwarded(message: dict[str, Any]) -> bool:
    return message.get("forwarded") is True


def parse_ids(message: dict[str, Any]) -> list[int]:
    """The instance ids of a hint, ignoring anything that is not one."""
    raw = message.get("ids")
    if not isinstance(raw, list):
        return []
    return [i for i in raw if isinstance(i, int) and not isinstance(i, bool) and i > 0]
