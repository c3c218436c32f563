"""Fixtures shared by the whole suite.

Integration fixtures start real parts: the gateway simulator as its own
process on 127.0.0.1, real Redis, the real database.

``make test`` runs the suite in two processes (pytest-xdist, ``-n 2``). Each
has a test database of its own (pytest-django names it ``test_<name>_gw0``,
``test_<name>_gw1``; on SQLite a file per process) and a Redis database of
its own (:func:`isolate_redis`), so that neither sees the other's keys,
channel groups, Celery queues or failed-login counts.
"""

import logging
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.database import application_name, close_shared_sync_thread_connections, terminate_leftovers
from tests.fixtures.engine import engine, engine_launched  # noqa: F401
from tests.fixtures.platform import platform  # noqa: F401
from tests.fixtures.redis_client import aredis  # noqa: F401
from tests.fixtures.redis_server import private_redis  # noqa: F401
from tests.fixtures.simulator import gateway_sim  # noqa: F401

logger = logging.getLogger(__name__)

# Every connection of the run names its process in pg_stat_activity, so that
# one left open can be traced (the fixtures name the processes they start).
os.environ.setdefault("PGAPPNAME", application_name())


# Redis has databases 0 to 15 unless configured otherwise.
REDIS_DATABASES = 16


def pytest_configure(config: pytest.Config) -> None:
    """The static folder exists, as ``make run``'s collectstatic leaves it:
    without it WhiteNoise warns "No directory at: staticfiles/" on every
    request the tests make, hundreds of lines that ask nobody to act."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker:
        isolate_redis(settings, int(worker.removeprefix("gw")))


def redis_database_url(url: str, offset: int) -> str:
    """``url`` with its database number moved ``offset`` up (``/0`` -> ``/2``;
    a ``unix://`` URL's ``?db=``)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if parts.scheme == "unix":
        number = int(query.get("db", ["0"])[0]) + offset
        query["db"] = [str(number)]
        # urlunsplit() would drop the empty host: unix:/path, which the settings refuse.
        moved = f"unix://{parts.netloc}{parts.path}?{urllib.parse.urlencode(query, doseq=True)}"
    else:
        number = int(parts.path.strip("/") or query.get("db", ["0"])[0]) + offset
        query.pop("db", None)
        moved = urllib.parse.urlunsplit(
            parts._replace(path=f"/{number}", query=urllib.parse.urlencode(query, doseq=True))
        )
    if number >= REDIS_DATABASES:
        raise pytest.UsageError(f"{url} has no database {number} for a test process: run fewer (-n)")
    return moved


def isolate_redis(settings: Any, index: int) -> None:
    """Test process ``index`` of a parallel run (xdist's ``gw<index>``), and
    every process it starts, use the Redis database ``index + 1`` above
    REDIS_URL's (REDIS_URL's own is left to serial runs). Most keys are named
    per test, but not all: the default prefix's failed-login counts, which
    every test's teardown clears, channel groups, Celery's control exchange;
    another test process's must not be seen."""
    url = redis_database_url(settings.REDIS_URL, index + 1)
    if settings.CELERY_BROKER_URL == settings.REDIS_URL:
        settings.CELERY_BROKER_URL = url
        os.environ["CELERY_BROKER_URL"] = url
    layer = settings.CHANNEL_LAYERS["default"]
    hosts = [url if host == settings.REDIS_URL else host for host in layer["CONFIG"]["hosts"]]
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": hosts}},
    }
    settings.REDIS_URL = url
    # The processes the tests start read the environment (tests.fixtures.platform
    # hands them settings.REDIS_URL; the others inherit it).
    os.environ["REDIS_URL"] = url


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
