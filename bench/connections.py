"""One connection worker holding N gateway sessions: what it costs, how it heals.

    .venv/bin/python bench/connections.py --sessions 10000 [--json out.json]

Starts, as separate processes: the gateway simulator (``--start-paired``),
one connection worker, and Celery with beat (the recovery jobs). Creates N
instances in a database of its own (a fresh SQLite file under .run/, or
``--database-url``), hints them all at once, and prints:

- sessions held and the time until all were connected;
- the worker's RSS per session (RSS holding N minus RSS idle, over N);
- the worker's CPU while idle with N sessions;
- after a gateway restart (every session dropped at once): the time until
  99% and 100% are connected again, and connection attempts per second
  (peak, and the spread of the first and last attempt), from the attempt
  events the worker wrote.

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Processes,
    bench_env,
    celery_argv,
    create_instances,
    free_port,
    setup_django,
    utc,
    wait,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--timeline", default=None, help="write connected-over-time after the restart (CSV)")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    database_url = args.database_url or f"sqlite:///{run_dir / f'bench-connections-{tag}.sqlite3'}"
    env = bench_env(tag, database_url)
    setup_django(env)
    python = sys.executable
    from django.db.models import Count

    from instances import hints
    from instances.models import CircuitBreaker, ConnectionEvent, Gateway, Instance, Status, Tenant

    port = free_port()
    logs = run_dir / f"bench-connections-{tag}"
    group = Processes(env, logs)
    start = group.start

    try:
        start("gateway", [python, "manage.py", "run_gateway_sim", "--port", str(port), "--start-paired"])
        from simulator.control import SimulatorControl

        control = SimulatorControl(f"http://127.0.0.1:{port}")
        control.wait_healthy(30)

        tenant = Tenant.objects.create(slug=f"bench-{tag}", name="Bench")
        gateway = Gateway.objects.create(name=f"bench-{tag}", url=f"ws://127.0.0.1:{port}")
        created = time.monotonic()
        ids = create_instances(tenant, gateway, args.sessions)
        print(f"created {len(ids)} instances in {time.monotonic() - created:.1f}s")

        worker = start("worker", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}"])
        start("celery", celery_argv(env, logs))
        from instances.models import WorkerHeartbeat

        wait(
            lambda: WorkerHeartbeat.objects.filter(worker_id=f"bench-{tag}").exists(),
            60,
            what="worker heartbeat",
        )
        proc = psutil.Process(worker.pid)
        rss_idle = proc.memory_info().rss

        def connected() -> int:
            return Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).count()

        hints.send(ids)
        connect_all = wait(lambda: connected() == len(ids), 600, what="all connected")
        print(f"connected {len(ids)} sessions in {connect_all:.1f}s")
        time.sleep(5)  # let the last writes and the allocator settle
        rss_held = proc.memory_info().rss
        per_session = (rss_held - rss_idle) / len(ids)
        proc.cpu_percent(None)
        time.sleep(args.idle_seconds)
        cpu_idle = proc.cpu_percent(None)
        sim_sessions = control.stats()["sessions"]

        restart_wall = time.time()
        restart_at = time.monotonic()
        control.restart()
        # Ready again = a session open at the gateway and `ready` recorded by
        # the worker; counted from the database once the drop is recorded.
        wait(lambda: connected() < 0.01 * len(ids), 120, interval=0.2, what="the drop to be recorded")
        timeline: list[tuple[float, int]] = []
        ready_99 = None
        while time.monotonic() - restart_at < 600:
            count = connected()
            elapsed = time.monotonic() - restart_at
            timeline.append((round(elapsed, 2), count))
            if ready_99 is None and count >= 0.99 * len(ids):
                ready_99 = elapsed
            if count == len(ids):
                break
            time.sleep(0.5)
        ready_all = time.monotonic() - restart_at
        attempts = [
            at.timestamp() - restart_wall
            for at in ConnectionEvent.objects.filter(instance__tenant=tenant, kind="attempt")
            .filter(at__gte=utc(restart_wall))
            .values_list("at", flat=True)
        ]
        per_second = collections.Counter(int(a) for a in attempts)
        stats = control.stats()
        max_concurrent = max(v["max_concurrent"] for v in stats["instances"].values())
        breakers = dict(
            CircuitBreaker.objects.filter(instance__tenant=tenant).values_list("state").annotate(n=Count("id"))
        )
        figures = {
            "sessions_requested": len(ids),
            "sessions_held": sim_sessions,
            "time_to_connect_all_s": round(connect_all, 1),
            "worker_rss_idle_mib": round(rss_idle / 2**20, 1),
            "worker_rss_holding_mib": round(rss_held / 2**20, 1),
            "worker_rss_per_session_kib": round(per_session / 1024, 1),
            "worker_cpu_idle_percent": round(cpu_idle, 1),
            "restart_ready_99_percent_s": round(ready_99, 1) if ready_99 is not None else None,
            "restart_ready_all_s": round(ready_all, 1),
            "restart_attempts": len(attempts),
            "restart_peak_attempts_per_s": max(per_second.values()) if per_second else 0,
            "restart_first_attempt_s": round(min(attempts), 1) if attempts else None,
            "restart_last_attempt_s": round(max(attempts), 1) if attempts else None,
            "max_concurrent_sessions_per_instance": max_concurrent,
            "breakers": breakers,
            "database": database_url.split(":", 1)[0],
        }
        for name, value in figures.items():
            print(f"{name:40s} {value}")
        histogram = " ".join(f"{s}s:{per_second[s]}" for s in sorted(per_second))
        print(f"attempts per second after restart: {histogram}")
        if args.json:
            Path(args.json).write_text(json.dumps({**figures, "attempts_per_second": per_second}, indent=2))
        if args.timeline:
            Path(args.timeline).write_text("seconds,connected\n" + "".join(f"{t},{c}\n" for t, c in timeline))
        return 0
    finally:
        group.stop()


if __name__ == "__main__":
    raise SystemExit(main())
