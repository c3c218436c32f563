"""A test run leaves no test database behind on PostgreSQL.

pytest-django drops the test database when the session ends, and PostgreSQL
refuses while anything is still connected to it ("is being accessed by other
users"): the database then stays on the shared server. Each test here runs a
small pytest session of the suite's own fixtures in a subprocess, on a test
database of its own, and looks at what that session printed and at the
server afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.fixtures.database import application_name

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120

# The suite's conftest (fixtures and hooks) for a session outside tests/.
CONFTEST = """
import tests.conftest as suite

globals().update({name: value for name, value in vars(suite).items() if not name.startswith("__")})
"""

# Code and fixtures that held connections past the end of the run: health
# evaluated through sync_to_async outside a request (asgiref's shared
# thread), and the engine's processes (simulator, worker, Celery with beat).
CONNECTING_TESTS = """
import pytest

from instances.models import Status
from monitoring import views
from tests.fixtures.simulator import gateway_sim_args

pytestmark = pytest.mark.django_db(transaction=True)


async def test_health_evaluated_outside_a_request():
    report = await views.shared_evaluation()
    assert report.check("database:responseTime") is not None


@gateway_sim_args("--start-paired")
def test_an_instance_connects_through_the_engine(engine):
    instance = engine.create("teardown")
    engine.wait_status(instance, Status.CONNECTED, timeout=60)
"""

# A connection nobody will ever close: only the safety net can end it.
KEPT_CONNECTION = """
import threading

import pytest
from django.db import connections

pytestmark = pytest.mark.django_db(transaction=True)
KEPT = []


def test_a_thread_leaves_its_connection_open():
    def work():
        connections["default"].ensure_connection()
        KEPT.append(connections["default"])  # outlives the thread, never closed

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert KEPT[0].connection is not None
"""


def _admin() -> Any:
    import psycopg

    params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
    return psycopg.connect(**params)


def _database_url(name: str) -> str:
    db = connection.settings_dict
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"


def _exists(name: str) -> bool:
    with _admin() as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


class Session:
    """A pytest session in a subprocess, on PostgreSQL database ``name``
    (test database ``test_<name>``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"blast_teardown_{uuid.uuid4().hex[:8]}"
        self.test_database = f"test_{self.name}"

    def run(self, module: str) -> tuple[int, int, str]:
        """Run ``module`` as a test file; its exit code, pid and output."""
        (self.directory / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        test_file = self.directory / "test_connections.py"
        test_file.write_text(module)
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(self.name),
            "PGAPPNAME": application_name(),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(self.directory / "basetemp"),
            "-q",
            str(test_file),
        ]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"the pytest session did not end within {RUN_TIMEOUT_S}s:\n{output.decode(errors='replace')}")
        return process.returncode, process.pid, output.decode(errors="replace")

    def drop(self) -> None:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.test_database}" WITH (FORCE)')


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: on SQLite every run has a test database file of its own")
    run = Session(tmp_path)
    yield run
    run.drop()  # whatever the outcome, nothing stays on the server


def test_the_suites_fixtures_leave_nothing_connected_and_the_database_is_dropped(session: Session) -> None:
    code, _, output = session.run(CONNECTING_TESTS)
    assert code == 0, output
    assert "2 passed" in output, output
    assert "being accessed by other users" not in output, output
    # Closed where they were opened: the safety net found nothing to end.
    assert "terminated:" not in output, output
    assert not _exists(session.test_database), output


def test_a_connection_left_open_is_terminated_reported_and_the_database_dropped(session: Session) -> None:
    code, pid, output = session.run(KEPT_CONNECTION)
    assert code == 0, output
    assert "being accessed by other users" not in output, output
    # Reported with whose it was, so that the cause can be found and fixed.
    assert "connected to the test database at the end of the run, terminated: backend" in output, output
    assert f"of the test process (pid {pid}) ({application_name()}, idle)" in output, output
    assert not _exists(session.test_database), output
