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
from collections.abc import Iterable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger("blast.hints")

MESSAGE_TYPE = "instances.reconcile"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


def worker_channel(common: str, worker_id: str) -> str:
    """The channel a single worker listens on beside the common one."""
    return f"{common}.w.{_UNSAFE.sub('-', worker_id)}"[:99]


def _chunks(ids: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


async def send_async(layer: Any, ids: Iterable[int], channel: str, batch: int) -> int:
    """Send hints naming ``ids``; returns how many messages went out."""
    unique = sorted(set(ids))
    sent = 0
    for chunk in _chunks(unique, batch):
        try:
            await layer.send(channel, {"type": MESSAGE_TYPE, "ids": chunk})
            sent += 1
        except ChannelFull:
            logger.warning("⚠️ channel %s is full; %d instances left to the recovery jobs", channel, len(chunk))
        except (RedisError, OSError):
            logger.warning("⚠️ hint to %s failed; %d instances left to the recovery jobs", channel, len(chunk))
    return sent


def send(ids: Iterable[int], channel: str | None = None) -> int:
    """Synchronous :func:`send_async` for views, commands and beat jobs."""
    ids = list(ids)
    if not ids:
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0
    return int(
        async_to_sync(send_async)(layer, ids, channel or settings.BLAST_WORKER_CHANNEL, settings.BLAST_HINT_BATCH)
    )


def parse_ids(message: dict[str, Any]) -> list[int]:
    """The instance ids of a hint, ignoring anything that is not one."""
    raw = message.get("ids")
    if not isinstance(raw, list):
        return []
    return [i for i in raw if isinstance(i, int) and not isinstance(i, bool) and i > 0]
