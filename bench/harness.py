"""What the benchmarks share: free ports, deadline waits, a group of
platform processes started with one environment and stopped together."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(predicate: Any, timeout: float, interval: float = 0.5, what: str = "") -> float:
    """Poll ``predicate`` until it is true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


class Processes:
    """Platform processes, each logging to ``logs/<name>.log``."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.terminate()
        for proc in self.started:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def bench_env(tag: str, database_url: str, prefix: str = "bench", **extra: str) -> dict[str, str]:
    """The environment of one run's processes: its own database, Redis
    prefix, worker channel and Celery queue, so that runs never meet."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "BLAST_REDIS_PREFIX": f"{prefix}-{tag}",
        "BLAST_WORKER_CHANNEL": f"{prefix}-{tag}",
        "CELERY_TASK_DEFAULT_QUEUE": f"{prefix}-{tag}",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        # Throughput is measured at the caps a benchmark sets, not a new number's.
        "BLAST_WARMUP_ENABLED": "0",
        **extra,
    }


def setup_django(env: dict[str, str]) -> None:
    """Adopt ``env`` in this process, migrate its database and set Django up."""
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blast.settings")
    django.setup()


def celery_argv(env: dict[str, str], logs: Path, loglevel: str = "WARNING") -> list[str]:
    """Celery with beat (the recovery jobs) on the run's own queue."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "blast",
        "worker",
        "-B",
        "--pool",
        "solo",
        "--loglevel",
        loglevel,
        "-Q",
        env["CELERY_TASK_DEFAULT_QUEUE"],
        "--schedule",
        str(logs / "beat-schedule"),
        "--scheduler",
        "blast.beat:ResilientDatabaseScheduler",
    ]


@dataclass
class Simulator:
    """The run's gateway simulator: its port, control client and process."""

    port: int
    control: Any  # simulator.control.SimulatorControl
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def start_simulator(group: Processes, *options: str) -> Simulator:
    """``manage.py run_gateway_sim --start-paired`` (then ``options``) on a
    free port, logging to ``gateway.log``, once its control API answers."""
    from simulator.control import SimulatorControl

    port = free_port()
    argv = [sys.executable, "manage.py", "run_gateway_sim", "--port", str(port), "--start-paired", *options]
    process = group.start("gateway", argv)
    control = SimulatorControl(f"http://127.0.0.1:{port}")
    control.wait_healthy(30)
    return Simulator(port, control, process)


def bench_tenant(tag: str, simulator: Simulator) -> tuple[Any, Any]:
    """The run's tenant, ``bench-<tag>``, and its gateway: ``simulator``."""
    from instances.models import Gateway, Tenant

    tenant = Tenant.objects.create(slug=f"bench-{tag}", name="Bench")
    gateway = Gateway.objects.create(name=f"bench-{tag}", url=simulator.url)
    return tenant, gateway


def create_instances(tenant: Any, gateway: Any, count: int, prefix: str = "i") -> list[int]:
    """``count`` running instances of ``tenant`` on ``gateway`` (a gateway of
    the run's own, with no instances yet), each with a token and a closed
    breaker; their ids."""
    from instances.models import CircuitBreaker, Instance
    from instances.tokens import encrypt

    Instance.objects.bulk_create(
        [
            Instance(
                tenant=tenant,
                name=f"{prefix}{n:05d}",
                gateway=gateway,
                desired_state="running",
                token_encrypted=encrypt(uuid.uuid4().hex),
            )
            for n in range(count)
        ],
        batch_size=1000,
    )
    ids = list(Instance.objects.filter(gateway=gateway).order_by("id").values_list("id", flat=True))
    CircuitBreaker.objects.bulk_create([CircuitBreaker(instance_id=i) for i in ids], batch_size=1000)
    return ids


def utc(ts: float) -> Any:
    """Epoch seconds as an aware UTC datetime, for filtering event times."""
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def alerts_raised(gateway_id: int, since: float) -> dict[str, int]:
    """Alerts since ``since`` about the gateway (down, up) and its instances (firing), by kind."""
    from django.db.models import Count

    from monitoring.models import Alert, AlertKind, AlertStatus

    raised = {AlertKind.GATEWAY_DOWN.value: 0, AlertKind.GATEWAY_UP.value: 0, AlertKind.BREAKER_OPEN.value: 0}
    gateway_alerts = Alert.objects.filter(
        kind__in=[AlertKind.GATEWAY_DOWN, AlertKind.GATEWAY_UP], created_at__gte=utc(since)
    ).values_list("kind", "data")
    for kind, data in gateway_alerts:
        if (data.get("gateway") or {}).get("id") == gateway_id:
            raised[kind] += 1
    instance_alerts = (
        Alert.objects.filter(instance__gateway_id=gateway_id, status=AlertStatus.FIRING, created_at__gte=utc(since))
        .values_list("kind")
        .annotate(n=Count("id"))
    )
    for kind, n in instance_alerts:
        raised[kind] = raised.get(kind, 0) + n
    return raised


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the PostgreSQL server of ``server_url``;
    its URL."""
    from urllib.parse import urlsplit

    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_facts() -> dict[str, str]:
    """When a run began and at which commit: what ``make bench`` stamps on a
    result too, so that a result measured by hand says the same."""
    import datetime as dt

    def git(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)

    commit = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    # Results written by earlier runs do not change what is measured.
    modified = git("diff", "--quiet", "HEAD", "--", ".", ":(exclude)bench/results").returncode == 1
    return {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit + (" (tracked files modified)" if modified else ""),
    }


def command_line() -> str:
    """This process's command line as one would type it in the project folder."""
    import shlex

    shown = []
    for arg in [sys.executable, *sys.argv]:
        path = Path(arg)
        if path.is_absolute() and path.is_relative_to(ROOT):
            arg = str(path.relative_to(ROOT))
        shown.append(arg)
    return shlex.join(shown)
