"""API keys in query strings (the seed's ``?access_token=``) never reach a log line.

Checked where request lines are written: the ``django.server``/``django.request``
loggers through the project's logging configuration, and the access log of
the real web process (started with the Procfile's ``web`` command).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.models import ApiKey
from blast.logs import RedactSecretsFilter
from instances.models import Tenant
from simulator.server import free_port
from tests.fixtures.platform import ROOT, database_url, wait_until

SECRET = "blast_0123456789ab_S3CRET-should-never-be-logged-xyz"


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the project's console handler writes, as configured by settings.LOGGING."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_request_lines_logged_by_django_are_redacted(console: io.StringIO) -> None:
    """Every request logger ends at the console handler, whose filter masks the secrets."""
    line = f'"GET /circuit-breaker-status/abc?access_token={SECRET}&x=1 HTTP/1.1" 401 58'
    logging.getLogger("django.server").warning(line)  # runserver's request lines
    logging.getLogger("django.request").warning("Unauthorized: %s", f"/force-retry/abc?access_token={SECRET}")
    logging.getLogger("blast.api").warning("header was Bearer %s", SECRET)
    logging.getLogger("django.request").warning("Not Found: %s", f"/x?access_toke%6E={SECRET}")
    written = console.getvalue()
    assert "access_token=[redacted]&x=1" in written
    assert "Unauthorized: /force-retry/abc?access_token=[redacted]" in written
    assert "Bearer [redacted]" in written
    assert "Not Found: /x?access_toke%6E=[redacted]" in written
    assert SECRET not in written


@pytest.mark.django_db(transaction=True)
def test_the_web_process_access_log_does_not_show_access_tokens(tmp_path: Path, settings: Any) -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    _, live_key = ApiKey.objects.create_key(tenant, "logged")
    port = free_port()
    log_path = tmp_path / "web.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
        "WEB_PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command('web')}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, timeout=60, message="daphne up")
        assert process.poll() is None, log_path.read_text()
        # As written, with its name percent-encoded (Django decodes it: the
        # key works), and carried encoded inside another parameter.
        queries = [
            *(f"access_token={token}" for token in (SECRET, live_key)),
            *(f"access_toke%6E={token}" for token in (SECRET, live_key)),
            f"next=%2Fx%3Faccess_token%3D{live_key}",
        ]
        statuses = [
            _get(f"http://127.0.0.1:{port}/circuit-breaker-status/7d3c1a9e-0000-4000-8000-000000000000?{query}")
            for query in queries
        ]
        assert statuses[3] == 404, "the encoded name authenticates, so it must be redacted"
        wait_until(
            lambda: log_path.read_text().count("circuit-breaker-status") >= len(queries), timeout=30, message="logged"
        )
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = log_path.read_text()
    assert "circuit-breaker-status" in text
    assert "access_toke%6E=[redacted]" in text
    assert SECRET not in text
    assert live_key not in text


def procfile_command(name: str) -> str:
    """The command the Procfile runs for process ``name`` (what ``make run`` starts)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} process in the Procfile")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
