"""How fast ``/health`` answers while one worker holds N sessions, steady and through a gateway restart.

    .venv/bin/python bench/health_latency.py --instances 10000 [--concurrency 50] [--seconds 30]
        [--database-url postgres://...] [--json out.json]

Starts, as separate processes: the gateway simulator (``--start-paired``),
one connection worker and Celery with beat (the recovery jobs), in a
database of its own (a fresh SQLite file under .run/, or
``--database-url``). Creates N instances, hints them all at once and waits
until every one is connected. Then it starts the web process
(``python -m blast.web``, daphne, as the Procfile does) and, from a separate
process, keeps ``--concurrency`` clients sending ``GET /health`` back to back,
in two phases:

- steady: the worker holds all N sessions, for ``--seconds``;
- restart: the gateway drops every session at once
  (``SimulatorControl.restart()``) as the phase starts; it lasts until every
  instance is connected again, at least ``--seconds`` and at most
  ``--restart-timeout``.

An answer counts as an error unless it is HTTP 200 with a health body that
counts all N instances (``status`` pass or warn; a restart rightly turns it
warn while the score is low). Prints, for each phase: requests, errors,
latency p50/p95/p99/max in ms, requests per second, the health statuses seen
and the web process's CPU.

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Processes,
    bench_env,
    bench_tenant,
    celery_argv,
    create_instances,
    free_port,
    setup_django,
    start_simulator,
    wait,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50, help="clients sending GET /health back to back")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the steady phase (restart: minimum)")
    parser.add_argument("--restart-timeout", type=float, default=180.0, help="longest restart phase, in seconds")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", default=None, help="also write the figures and the command line to this file")
    args = parser.parse_args()
    command = command_line()

    tag = uuid.uuid4().hex[:8]
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    database_url = args.database_url or f"sqlite:///{run_dir / f'bench-health-{tag}.sqlite3'}"
    env = bench_env(tag, database_url)
    setup_django(env)
    python = sys.executable
    from instances import hints
    from instances.models import Instance, Status, WorkerHeartbeat

    logs = run_dir / f"bench-health-{tag}"
    group = Processes(env, logs)
    start = group.start

    try:
        simulator = start_simulator(group)
        control = simulator.control
        tenant, gateway = bench_tenant(tag, simulator)
        ids = create_instances(tenant, gateway, args.instances)

        start("worker", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}"])
        start("celery", celery_argv(env, logs))
        wait(
            lambda: WorkerHeartbeat.objects.filter(worker_id=f"bench-{tag}").exists(),
            60,
            what="worker heartbeat",
        )

        def connected() -> int:
            return Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).count()

        hints.send(ids)
        connect_all = wait(lambda: connected() == len(ids), 900, what="all connected")
        print(f"connected {len(ids)} sessions in {connect_all:.1f}s")

        web_port = free_port()
        web = start(
            "web", [python, "-m", "blast.web", "-b", "127.0.0.1", "-p", str(web_port), "blast.asgi:application"]
        )
        url = f"http://127.0.0.1:{web_port}/health"
        wait(lambda: probe(url)[0] == 200, 60, what="web to answer /health")
        # The Celery heartbeat and the first beat run take a few seconds after
        # start; measure once /health says pass (or report what it says).
        try:
            wait(lambda: probe(url)[1] == "pass", 90, interval=1.0, what="/health to pass")
        except SystemExit as exc:
            print(f"{exc}; measuring anyway (/health says {probe(url)[1]!r})")
        web_proc = psutil.Process(web.pid)

        steady = measure(url, args.concurrency, args.seconds, len(ids), web_proc, until=None)
        steady["connected_at_end"] = connected()

        restart_at: list[float] = []

        def begin_restart() -> None:
            control.restart()
            restart_at.append(time.monotonic())

        dropped = False
        ready_again: list[float] = []

        def restart_over() -> bool:
            nonlocal dropped
            count = connected()
            dropped = dropped or count < len(ids)
            if dropped and count == len(ids) and not ready_again:
                ready_again.append(time.monotonic() - restart_at[0])
            return bool(ready_again)

        restart = measure(
            url,
            args.concurrency,
            args.seconds,
            len(ids),
            web_proc,
            until=restart_over,
            on_start=begin_restart,
            timeout=args.restart_timeout,
        )
        restart["connected_at_end"] = connected()
        restart["all_ready_again_s"] = round(ready_again[0], 1) if ready_again else None

        figures = {
            "command": command,
            "instances": len(ids),
            "concurrency": args.concurrency,
            "database": database_url.split(":", 1)[0],
            "time_to_connect_all_s": round(connect_all, 1),
            "phases": {"steady": steady, "restart": restart},
        }
        print_figures(figures)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    finally:
        group.stop()


def command_line() -> str:
    """This run's command line, with paths inside the project relative to it."""

    def shown(path: str) -> str:
        try:
            return str(Path(path).absolute().relative_to(ROOT))
        except ValueError:
            return path

    return shlex.join([shown(sys.executable), shown(sys.argv[0]), *sys.argv[1:]])


def probe(url: str) -> tuple[int, str]:
    """One GET: the HTTP status and the health status (0 and "" when it does not answer)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, str(json.loads(response.read()).get("status", ""))
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError):
        return 0, ""


def measure(
    url: str,
    concurrency: int,
    seconds: float,
    expected_total: int,
    web: psutil.Process,
    *,
    until: Callable[[], bool] | None,
    on_start: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """One phase: the load runs in a process of its own while this one watches.

    Without ``until`` the phase lasts ``seconds``; with it, until ``until()``
    is true and at least ``seconds`` have passed, at most ``timeout``.
    """
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results = context.Queue()
    longest = seconds if until is None else max(seconds, timeout or seconds)
    load = context.Process(target=run_load, args=(url, concurrency, longest, expected_total, stop, results))
    load.start()
    ready = results.get(timeout=60)  # the load process says it is about to send
    assert ready == "ready"
    started = time.monotonic()
    web.cpu_percent(None)
    if on_start is not None:
        on_start()
    while time.monotonic() - started < longest:
        time.sleep(0.5)
        if until is not None and until() and time.monotonic() - started >= seconds:
            break
    stop.set()
    figures: dict[str, Any] = results.get(timeout=120)
    figures["web_cpu_percent"] = round(web.cpu_percent(None), 1)
    load.join(timeout=30)
    return figures


def run_load(url: str, concurrency: int, seconds: float, expected_total: int, stop: Any, results: Any) -> None:
    results.put("ready")
    results.put(asyncio.run(load(url, concurrency, seconds, expected_total, stop)))


async def load(url: str, concurrency: int, seconds: float, expected_total: int, stop: Any) -> dict[str, Any]:
    """``concurrency`` clients GET ``url`` back to back until ``stop`` is set or ``seconds`` pass."""
    import aiohttp

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    health: Counter[str] = Counter()
    unanswered = 0
    done = asyncio.Event()

    async def watch() -> None:
        await asyncio.to_thread(stop.wait, seconds)
        done.set()

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal unanswered
        while not done.is_set():
            sent = time.perf_counter()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                unanswered += 1
                continue
            latencies.append(time.perf_counter() - sent)
            problem, state = judge(status, body, expected_total)
            if state:
                health[state] += 1
            if problem:
                errors[problem] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.monotonic()
        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        await watcher
        elapsed = time.monotonic() - began
    latencies.sort()
    requests = len(latencies) + unanswered
    return {
        "seconds": round(elapsed, 1),
        "requests": requests,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "health_status": dict(health),
        "p50_ms": percentile_ms(latencies, 50),
        "p95_ms": percentile_ms(latencies, 95),
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "requests_per_s": round(requests / elapsed, 1) if elapsed else None,
    }


def judge(status: int, body: bytes, expected_total: int) -> tuple[str, str]:
    """What is wrong with one answer ("" when nothing), and the health status it gives."""
    try:
        document = json.loads(body)
        state = str(document.get("status", ""))
        total = document.get("instances", {}).get("total")
    except (ValueError, AttributeError):
        return (f"HTTP {status}" if status != 200 else "body: not health JSON"), ""
    if status != 200:
        return f"HTTP {status}", state
    if state not in ("pass", "warn") or document.get("serviceId") != "blast":
        return "body: not pass or warn", state
    if total != expected_total:
        return "body: wrong instance count", state
    return "", state


def percentile_ms(ordered: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of sorted seconds, in ms."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * p // 100))
    return round(ordered[int(rank) - 1] * 1000, 1)


def print_figures(figures: dict[str, Any]) -> None:
    phases: dict[str, dict[str, Any]] = figures["phases"]
    print(f"/health with {figures['concurrency']} clients, {figures['instances']} instances ({figures['database']})")
    names = list(dict.fromkeys(name for phase in phases.values() for name in phase))
    print(f"{'figure':24s}" + "".join(f"{phase:>24s}" for phase in phases))
    for name in names:
        print(f"{name:24s}" + "".join(f"{_short(phase.get(name)):>24s}" for phase in phases.values()))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}:{v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
