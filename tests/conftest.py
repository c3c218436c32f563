"""Fixtures shared by the whole suite.

Integration fixtures start real parts: the gateway simulator as its own
process on 127.0.0.1, real Redis, the real database.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.engine import engine  # noqa: F401
from tests.fixtures.platform import platform  # noqa: F401
from tests.fixtures.redis_server import private_redis  # noqa: F401
from tests.fixtures.simulator import gateway_sim  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    """The static folder exists, as ``make run``'s collectstatic leaves it:
    without it WhiteNoise warns "No directory at: staticfiles/" on every
    request the tests make, hundreds of lines that ask nobody to act."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def _forget_failed_logins(settings: Any) -> Iterator[None]:
    """Failed-authentication counters (instances.throttle) are kept in Redis for
    a window; a test's bad keys must not throttle the next test's requests."""
    yield
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        keys = list(client.scan_iter(match=f"{settings.BLAST_REDIS_PREFIX}:authfail:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except redis.RedisError:
        pass
