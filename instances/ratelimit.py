"""Per-instance rate limit of the manual controls (force retry, reset breaker).

The limit is per instance and per action, not per client: however many keys,
users or processes ask, one action per instance gets through per interval,
so nobody can use the controls to hammer a failing gateway. The slot is one
Redis key claimed with ``SET NX PX`` inside a script that also answers the
time left, so concurrent requests on any number of web processes cannot both
win.
"""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

# Claim the slot, or answer the milliseconds left on it.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = tonumber(ARGV[2]) end
return left
"""
# Give the slot back only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RateLimited(Exception):
    """Another request used this instance's slot; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"rate limited; retry after {retry_after_s:.1f} s")

    @property
    def retry_after_header(self) -> int:
        """Whole seconds for a ``Retry-After`` header (never 0 while limited)."""
        return max(1, math.ceil(self.retry_after_s))


class LimiterUnavailable(Exception):
    """Redis could not be reached: the limit cannot be checked, so the action is refused."""


@functools.lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


@dataclass(frozen=True)
class Slot:
    """A claimed slot; :meth:`release` gives it back (the action did not happen)."""

    key: str
    token: str

    def release(self) -> None:
        try:
            _client(settings.REDIS_URL).eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            pass  # the slot expires by itself


def slot_key(action: str, instance_key: str) -> str:
    return f"{settings.BLAST_REDIS_PREFIX}:manual:{action}:{instance_key}"


def claim(action: str, instance_key: str, interval_s: float | None = None) -> Slot | None:
    """Claim ``action``'s slot for the instance for ``interval_s`` (default: the setting).

    Returns the slot, or None when the limit is off (interval 0). Raises
    :class:`RateLimited` when the slot is taken and
    :class:`LimiterUnavailable` when Redis fails (fail closed: a gateway
    is better protected by a refused click than by an unchecked one).
    """
    if interval_s is None:
        interval_s = float(settings.BLAST_MANUAL_ACTION_INTERVAL_S)
    if interval_s <= 0:
        return None
    key = slot_key(action, instance_key)
    token = secrets.token_hex(8)
    try:
        ttl_ms = str(max(1, int(interval_s * 1000)))
        answer: Any = _client(settings.REDIS_URL).eval(_CLAIM, 1, key, token, ttl_ms)
        left_ms = int(answer)
    except redis.RedisError as exc:
        raise LimiterUnavailable(str(exc)) from exc
    if left_ms >= 0:
        raise RateLimited(left_ms / 1000.0)
    return Slot(key, token)
