"""The worker survives Redis restarts and database outages, and catches up.

Redis here is a private redis-server the test stops and starts; the
database outage is a real one: on PostgreSQL new connections are refused
and the worker's are terminated, on SQLite the file is locked exclusively.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from instances.models import EventKind, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.simulator import gateway_sim_args


def _on_private_redis(engine: Engine, server: RedisServer) -> None:
    # private_redis is requested before engine, so the platform's processes
    # were started on it.
    assert engine.platform.env["REDIS_URL"] == server.url


def _leases(engine: Engine) -> int:
    return len(list(engine.platform.redis().scan_iter(match=f"{engine.platform.prefix}:lease:*")))


@gateway_sim_args("--start-paired")
def test_a_redis_restart_keeps_live_sessions(private_redis: RedisServer, engine: Engine) -> None:
    _on_private_redis(engine, private_redis)
    # A lease long enough that a restart on a loaded machine fits inside it.
    engine.workers[0].terminate()
    engine.workers.append(engine.platform.start_worker("long-lease", BLAST_LEASE_TTL_S="12"))
    instances = [engine.create(f"r{n}") for n in range(5)]
    engine.wait_all(instances, Status.CONNECTED)

    private_redis.restart()  # every lease is gone with it

    wait_until(lambda: _leases(engine) == 5, timeout=20, message="leases re-acquired")
    for instance in instances:
        assert engine.status(instance) == Status.CONNECTED
        assert engine.sim_stats(instance)["connects"] == 1  # the same session, kept
    # Hints and beat work again: a new instance connects.
    late = engine.create("after-restart")
    engine.wait_status(late, Status.CONNECTED, timeout=30)
    assert engine.workers[-1].alive()


@gateway_sim_args("--start-paired")
def test_redis_down_longer_than_a_lease_closes_sessions_in_time_then_heals(
    private_redis: RedisServer, engine: Engine
) -> None:
    _on_private_redis(engine, private_redis)
    instances = [engine.create(f"d{n}") for n in range(3)]
    engine.wait_all(instances, Status.CONNECTED)
    ttl = float(engine.platform.env["BLAST_LEASE_TTL_S"])

    private_redis.stop()
    # The worker cannot prove its leases: it closes the sessions itself.
    wait_until(
        lambda: sum(1 for line in engine.sim.log().splitlines() if "CLOSE" in line and "by=client" in line) == 3,
        timeout=ttl * 2,
        message="sessions closed by the worker",
    )
    private_redis.start()
    engine.wait_all(instances, Status.CONNECTED, timeout=60)
    for instance in instances:
        assert engine.sim_stats(instance)["max_concurrent"] == 1
        assert engine.disconnects(instance)[-1].reason == "lease_lost"
    assert engine.workers[0].alive()


@contextmanager
def database_outage() -> Iterator[None]:
    """Make the test database unreachable for the other processes."""
    if connection.vendor == "postgresql":
        import psycopg

        name = connection.settings_dict["NAME"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (own_pid,) = cursor.fetchone()
        # Connections to a database cannot be disallowed from inside it.
        params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
        with psycopg.connect(**params) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s AND pid <> pg_backend_pid()",
                [name, own_pid],
            )
        try:
            yield
        finally:
            with psycopg.connect(**params) as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    else:
        import sqlite3

        locker = sqlite3.connect(connection.settings_dict["NAME"], timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()


@gateway_sim_args("--start-paired")
def test_a_database_outage_keeps_sessions_and_catches_up(engine: Engine, settings: Any) -> None:
    if connection.vendor == "sqlite":
        # A locked SQLite file makes writers wait for the busy timeout; make
        # it short so that the worker's writes fail while the lock is held.
        engine.workers[0].terminate()
        engine.workers.append(engine.platform.start_worker("short-busy", SQLITE_BUSY_TIMEOUT_S="0.2"))
    worker = engine.workers[-1]
    instances = [engine.create(f"db{n}") for n in range(3)]
    engine.wait_all(instances, Status.CONNECTED)
    dropped = instances[0]
    before = engine.last_event_id()

    with database_outage():
        # A transition while the database is away: written later, not lost.
        engine.sim.control.close(str(dropped.key), 4503)
        wait_until(
            lambda: f"instance={dropped.pk} disconnected: unavailable" in worker.log(),
            timeout=20,
            message="worker saw the drop",
        )
        # The database stays away across several flush attempts.
        wait_until(lambda: worker.log().count("database unavailable") >= 2, timeout=20, message="failed flushes")
        assert worker.alive()

    event = engine.wait_event(dropped, EventKind.DISCONNECT, after=before, timeout=30)
    assert event.reason == "unavailable"
    engine.wait_all(instances, Status.CONNECTED, timeout=60)
    for instance in instances[1:]:
        assert engine.sim_stats(instance)["connects"] == 1  # never dropped
