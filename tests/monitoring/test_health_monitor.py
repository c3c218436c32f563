"""The health monitor against a stand-in /health that the test stops and
starts: it logs every check with its marker, alerts the platform-wide
webhooks once per transition, stops cleanly on SIGTERM; and the launcher
script runs it in the background with a pid file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from instances.models import Tenant
from monitoring.models import Alert, AlertDelivery
from tests.fixtures.platform import ROOT, Platform, wait_until
from tests.fixtures.webhooks import Receiver
from tests.fixtures.webhooks import verify as verify_signature
from tests.monitoring.conftest import FakeHealth, make_webhook


def log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def lines_with(path: Path, marker: str) -> list[str]:
    return [line for line in log_lines(path) if marker in line]


def test_it_logs_a_down_platform_and_its_recovery(
    platform: Platform, fake_health: FakeHealth, receiver: Receiver, tmp_path: Path
) -> None:
    make_webhook(receiver.url, secret="monitor-secret")
    # A tenant's webhook hears nothing about the platform.
    make_webhook(receiver.url, tenant=Tenant.objects.create(slug="t", name="T"), name="tenant hook")
    log = tmp_path / "logs" / "health-monitor.log"
    monitor = platform.start(
        "health-monitor",
        [
            sys.executable,
            "manage.py",
            "health_monitor",
            "--url",
            fake_health.url,
            "--interval",
            "0.2",
            "--timeout",
            "2",
            "--down-after",
            "2",
            "--log-file",
            str(log),
        ],
        BLAST_WEBHOOK_ALLOW_PRIVATE="1",  # the receiver listens on 127.0.0.1
    )
    wait_until(lambda: len(lines_with(log, "💚 pass")) >= 2, timeout=60, message=f"passing checks\n{monitor.log()}")
    assert lines_with(log, "▶️ monitor started")
    assert receiver.requests() == []  # a passing start says nothing

    fake_health.stop()
    [down] = receiver.wait_for(1)
    assert (down.json()["kind"], down.json()["status"], down.json()["severity"]) == (
        "platform_down",
        "firing",
        "critical",
    )
    assert verify_signature(
        "monitor-secret",
        down.headers["X-Blast-Timestamp"],
        down.headers["X-Blast-Signature"],
        down.body,
        now=time.time(),
    )
    assert lines_with(log, "💀 down")
    assert lines_with(log, "🔀 pass -> down")
    assert lines_with(log, "📣 alert platform_down firing posted to 1 webhooks")
    # Still down: logged at every check, alerted once.
    wait_until(lambda: len(lines_with(log, "💀 down")) >= 5, timeout=30, message="down checks")
    assert len(receiver.requests()) == 1

    fake_health.start()
    requests = receiver.wait_for(2)
    assert (requests[1].json()["kind"], requests[1].json()["status"]) == ("platform_down", "resolved")
    wait_until(lambda: lines_with(log, "🔀 down -> pass"), timeout=30, message="recovery logged")

    fake_health.status = "warn"
    requests = receiver.wait_for(3)
    assert (requests[2].json()["kind"], requests[2].json()["status"]) == ("platform_status", "firing")
    wait_until(lambda: lines_with(log, "💛 warn"), timeout=30, message="warn logged")
    fake_health.status = "pass"
    requests = receiver.wait_for(4)
    assert (requests[3].json()["kind"], requests[3].json()["status"]) == ("platform_status", "resolved")

    assert monitor.terminate(timeout=30) == 0
    assert log_lines(log)[-1].endswith("🏁 monitor stopped")
    assert len(receiver.requests()) == 4
    assert AlertDelivery.objects.filter(status="delivered").count() == 4
    assert Alert.objects.filter(kind="platform_down").count() == 2
    assert "Traceback" not in monitor.log()


@pytest.mark.django_db
def test_once_exits_with_the_status(fake_health: FakeHealth, tmp_path: Path) -> None:
    log = tmp_path / "monitor.log"
    for status, code in [("pass", 0), ("warn", 1), ("fail", 2)]:
        fake_health.status = status
        with pytest.raises(SystemExit) as exit_info:
            call_command("health_monitor", "--url", fake_health.url, "--once", "--log-file", str(log))
        assert exit_info.value.code == code
    fake_health.stop()
    with pytest.raises(SystemExit) as exit_info:
        call_command("health_monitor", "--url", fake_health.url, "--once", "--down-after", "1", "--log-file", str(log))
    assert exit_info.value.code == 3
    checks = [line for line in log_lines(log) if any(m in line for m in ("💚", "💛", "💔", "💀"))]
    assert ["💚 pass" in checks[0], "💛 warn" in checks[1], "💔 fail" in checks[2], "💀 down" in checks[3]] == [
        True
    ] * 4
    state = json.loads((tmp_path / "monitor.state").read_text())
    assert state["down"] is True


@pytest.mark.django_db
def test_an_answer_that_is_not_health_json_counts_as_down(tmp_path: Path, receiver: Receiver) -> None:
    # The receiver answers GET with 501: not a health response.
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "health_monitor",
            "--url",
            receiver.url,
            "--once",
            "--down-after",
            "1",
            "--log-file",
            str(tmp_path / "m.log"),
        )
    assert exit_info.value.code == 3
    assert "not a health response (HTTP 501)" in (tmp_path / "m.log").read_text()


def test_the_script_starts_reports_and_stops_the_monitor(
    platform: Platform, fake_health: FakeHealth, tmp_path: Path
) -> None:
    env: dict[str, Any] = {
        **os.environ,
        **platform.env,
        "PY": sys.executable,
        "HEALTH_URL": fake_health.url,
        "HEALTH_INTERVAL": "0.2",
        "BLAST_RUN_DIR": str(tmp_path / "run"),
        "BLAST_LOG_DIR": str(tmp_path / "logs"),
    }
    script = str(ROOT / "scripts" / "health-monitor.sh")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert run("status").returncode == 3
    started = run("start")
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "run" / "health-monitor.pid").read_text())
    try:
        assert "already running" in run("start").stdout
        log = tmp_path / "logs" / "health-monitor.log"
        wait_until(lambda: lines_with(log, "💚 pass"), timeout=60, message="a check in the log")
        status = run("status")
        assert status.returncode == 0 and f"pid {pid}" in status.stdout
        stopped = run("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not (tmp_path / "run" / "health-monitor.pid").exists()
        assert run("status").returncode == 3
        assert log_lines(log)[-1].endswith("🏁 monitor stopped")
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
