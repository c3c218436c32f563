"""Fixtures shared by the whole suite.

Integration fixtures start real parts: the gateway simulator as its own
process on 127.0.0.1, real Redis, the real database.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.database import application_name, close_shared_sync_thread_connections, terminate_leftovers
from tests.fixtures.engine import engine  # noqa: F401
from tests.fixtures.platform import platform  # noqa: F401
from tests.fixtures.redis_client import aredis  # noqa: F401
from tests.fixtures.redis_server import private_redis  # noqa: F401
from tests.fixtures.simulator import gateway_sim  # noqa: F401

logger = logging.getLogger(__name__)

# Every connection of the run names its process in pg_stat_activity, so that
# one left open can be traced (the fixtures name the processes they start).
os.environ.setdefault("PGAPPNAME", application_name())


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


@pytest.fixture(autouse=True)
def _close_shared_sync_thread_connections() -> Iterator[None]:
    """A connection opened by ``sync_to_async`` code outside a request stays
    open in asgiref's shared thread for the rest of the run, and the test
    database cannot be dropped while it is (tests.fixtures.database)."""
    yield
    close_shared_sync_thread_connections()


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None, django_db_blocker: Any, django_db_keepdb: bool, request: pytest.FixtureRequest
) -> Iterator[None]:
    """pytest-django's test databases, with a last safety net before they are
    dropped: a session still connected (a process or a thread that never
    closed its connection) is terminated and reported as a warning, instead
    of the drop failing and the database staying on the server."""
    yield
    if django_db_keepdb:
        return  # kept: nothing is dropped
    from django.db import connections

    with django_db_blocker.unblock():
        for alias in connections:
            connection = connections[alias]
            if connection.vendor != "postgresql":
                continue
            for backend in terminate_leftovers(connection):
                message = f"connected to the test database at the end of the run, terminated: {backend.describe()}"
                logger.warning("%s", message)
                request.node.warn(pytest.PytestWarning(message))
