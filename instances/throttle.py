"""Failed authentication, counted and throttled cluster-wide in Redis.

Two doors take credentials: the admin login (a user name and a password)
and the tenant API (an API key). Each failure is counted under one or more
*subjects* (the client address; for the admin also the user name, and the
pair of both) in a fixed window per subject. Once a subject's count reaches
its limit, further attempts are refused without checking the credentials
until the window ends, so a flood of bad keys or guessed passwords costs the
platform one Redis round trip per request and gets nowhere.

The counts live in Redis under ``BLAST_REDIS_PREFIX`` so that every web
process shares them, and running totals per door feed ``/metrics``
(``blast_auth_failures_total``, ``blast_auth_throttled_total``). When Redis
cannot be reached the door stays open (the credentials are still checked):
an operator locked out of the admin during a Redis outage is worse than an
unthrottled minute.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.conf import settings

log = logging.getLogger(__name__)

ADMIN = "admin"
API = "api"
DOORS = (ADMIN, API)

# KEYS[1]: the door's running total; KEYS[2..]: the subjects' counters.
# ARGV[1]: window in ms. Returns, per subject, the count after this failure
# and the milliseconds left in its window.
_RECORD = """
redis.call('INCR', KEYS[1])
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  local left = redis.call('PTTL', key)
  if left < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[#out + 1] = count
  out[#out + 1] = left
end
return out
"""


@dataclass(frozen=True)
class Subject:
    """One thing failures are counted for: ``kind`` (address, user, ...) and
    its value, with the number of failures allowed per window."""

    kind: str
    value: str
    limit: int


class Throttled(Exception):
    """Too many failures for a subject; retry after ``retry_after_s``."""

    def __init__(self, door: str, subject: Subject, retry_after_s: float) -> None:
        self.door = door
        self.subject = subject
        self.retry_after_s = retry_after_s
        super().__init__(f"{door}: too many failed attempts for this {subject.kind}")

    @property
    def retry_after_header(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


@functools.lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def _redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _key(door: str, subject: Subject) -> str:
    return f"{settings.BLAST_REDIS_PREFIX}:authfail:{door}:{subject.kind}:{subject.value}"


def total_key(door: str, what: str) -> str:
    """The running total of ``what`` (``failures`` or ``throttled``) at ``door``."""
    return f"{settings.BLAST_REDIS_PREFIX}:authfail:{door}:total:{what}"


def window_s(door: str) -> float:
    return float(settings.BLAST_LOGIN_FAILURE_WINDOW_S if door == ADMIN else settings.BLAST_AUTH_FAILURE_WINDOW_S)


def check(door: str, subjects: Sequence[Subject]) -> None:
    """Raise :class:`Throttled` when any subject is at its limit."""
    live = [subject for subject in subjects if subject.value and subject.limit > 0]
    if not live:
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for subject in live:
            pipe.get(_key(door, subject))
            pipe.pttl(_key(door, subject))
        answers = pipe.execute()
    except redis.RedisError as exc:
        log.warning("auth throttle unavailable (%s): %s not checked", type(exc).__name__, door)
        return
    for index, subject in enumerate(live):
        count, left_ms = answers[2 * index], answers[2 * index + 1]
        if count is not None and int(count) >= subject.limit:
            _count(door, "throttled")
            raise Throttled(door, subject, max(int(left_ms), 1000) / 1000.0)


def record_failure(door: str, subjects: Sequence[Subject]) -> None:
    """Count one failed attempt for every subject (and in the door's total).

    The first time a subject reaches its limit in a window is logged once:
    the address, never the credentials that were tried.
    """
    live = [subject for subject in subjects if subject.value and subject.limit > 0]
    window_ms = str(max(1, int(window_s(door) * 1000)))
    keys = [total_key(door, "failures"), *(_key(door, subject) for subject in live)]
    try:
        answer = _redis().eval(_RECORD, len(keys), *keys, window_ms)
    except redis.RedisError as exc:
        log.warning("auth throttle unavailable (%s): %s failure not counted", type(exc).__name__, door)
        return
    for index, subject in enumerate(live):
        if int(answer[2 * index]) == subject.limit:
            log.warning(
                "🚫 %s: %d failed attempts for %s %s; refused for %.0f s",
                door,
                subject.limit,
                subject.kind,
                subject.value if subject.kind == "address" else "(one)",
                int(answer[2 * index + 1]) / 1000.0,
            )


def clear(door: str, subjects: Sequence[Subject]) -> None:
    """Forget the failures of ``subjects`` (after a successful login)."""
    live = [subject for subject in subjects if subject.value]
    if not live:
        return
    try:
        _redis().delete(*[_key(door, subject) for subject in live])
    except redis.RedisError:
        pass  # the counters expire by themselves


def _count(door: str, what: str) -> None:
    try:
        _redis().incr(total_key(door, what))
    except redis.RedisError:
        pass


def totals() -> dict[tuple[str, str], int] | None:
    """{(door, failures|throttled): count}; None when Redis cannot be read."""
    pairs = [(door, what) for door in DOORS for what in ("failures", "throttled")]
    try:
        values = _redis().mget([total_key(door, what) for door, what in pairs])
    except redis.RedisError:
        return None
    return {pair: int(value or 0) for pair, value in zip(pairs, values, strict=True)}


def client_address(meta: dict[str, object]) -> str:
    """The client address of a request as the web server saw it.

    Behind a reverse proxy, run daphne with ``--proxy-headers`` so that this
    is the client's address and not the proxy's (docs/OPERATIONS.md).
    """
    return str(meta.get("REMOTE_ADDR") or "")
