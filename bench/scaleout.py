"""Scale-out: shares over workers, a worker joining, one stopped, one killed.

    .venv/bin/python bench/scaleout.py [--instances 9000] [--workers 3]
        [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--json out.json]

Starts the simulator (``--start-paired``), ``--workers`` connection workers
and Celery with beat, on a PostgreSQL database of the run's own, creates the
instances and hints them all, then measures:

1. **shares**: once every instance is connected, the sessions each worker
   holds (``Instance.owner``) and the largest distance from an even share;
2. **join**: one more worker starts; the time until every worker is within
   10 % of the new even share, the sessions moved (``handoff`` ends), moves
   per second (peak over whole seconds), the longest gap of a moved instance
   (its ``handoff`` end to its next ``ready``), and the most sessions the
   simulator ever saw at once for one instance (must be 1);
3. **SIGTERM** of one worker: the time until every instance is connected
   again, on the workers that remain;
4. **kill -9** of one worker: the same, beside the lease TTL plus one recovery
   period (the bound: its leases must expire before anyone may take over).

Every worker, Celery and the simulator share the machine's cores (two in CI):
the figures include that contention.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Processes,
    bench_env,
    celery_argv,
    command_line,
    create_database,
    create_instances,
    drop_database,
    free_port,
    run_facts,
    setup_django,
    utc,
    wait,
)

EVEN_WITHIN = 0.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=9000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.instances < 1 or args.workers < 2:
        parser.error("--instances must be >= 1 and --workers >= 2 (one is stopped, one killed)")
    facts = run_facts()

    tag = uuid.uuid4().hex[:8]
    dbname = f"blast_scaleout_{tag}"
    database_url = create_database(args.database_url, dbname)
    env = bench_env(tag, database_url)
    logs = ROOT / ".run" / f"bench-scaleout-{tag}"
    group = Processes(env, logs)
    python = sys.executable
    try:
        setup_django(env)
        figures = run(args, env, group, python)
    finally:
        group.stop()
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url, dbname)
    result = {"command": command_line(), **facts, **figures}
    for key, value in figures.items():
        print(f"{key:<44} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace, env: dict[str, str], group: Processes, python: str) -> dict[str, Any]:
    from django.conf import settings
    from django.db.models import Count

    from instances import hints
    from instances.models import ConnectionEvent, EventKind, Gateway, Instance, Status, Tenant, WorkerHeartbeat
    from simulator.control import SimulatorControl

    port = free_port()
    group.start("gateway", [python, "manage.py", "run_gateway_sim", "--port", str(port), "--start-paired"])
    control = SimulatorControl(f"http://127.0.0.1:{port}")
    control.wait_healthy(30)
    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    gateway = Gateway.objects.create(name=f"bench-{port}", url=f"ws://127.0.0.1:{port}")
    ids = create_instances(tenant, gateway, args.instances)
    total = len(ids)

    workers: dict[str, Any] = {}

    def start_worker(n: int) -> str:
        worker_id = f"bench-w{n}-{uuid.uuid4().hex[:4]}"
        workers[worker_id] = group.start(
            f"worker-{n}", [python, "manage.py", "run_connection_worker", "--worker-id", worker_id]
        )
        wait(lambda: WorkerHeartbeat.objects.filter(worker_id=worker_id).exists(), 60, what=f"{worker_id} heartbeat")
        return worker_id

    for n in range(args.workers):
        start_worker(n)
    group.start("celery", celery_argv(env, logs=group.logs))

    def held() -> dict[str, int]:
        rows = Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).values_list("owner")
        return dict(rows.annotate(n=Count("id")).values_list("owner", "n"))

    def connected() -> int:
        return Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).count()

    def spread(shares: dict[str, int], live: list[str]) -> float:
        even = total / len(live)
        return max(abs(shares.get(w, 0) - even) / even for w in live)

    def even(live: list[str]) -> bool:
        shares = held()
        return sum(shares.values()) == total and set(shares) <= set(live) and spread(shares, live) <= EVEN_WITHIN

    hints.send(ids)
    connect_s = wait(lambda: connected() == total, 600, what="every instance connected")
    live = list(workers)
    settle_s = wait(lambda: even(live), 300, what="even shares")
    shares = held()
    figures: dict[str, Any] = {
        "instances": total,
        "workers": args.workers,
        "connect_all_s": round(connect_s, 1),
        "even_after_connect_s": round(settle_s, 1),
        "shares": dict(sorted(shares.items())),
        "largest_distance_from_even_percent": round(100 * spread(shares, live), 1),
    }

    # -- a worker joins --------------------------------------------------------------
    joined_wall = time.time()
    joined_at = time.monotonic()
    start_worker(args.workers)
    live = list(workers)
    wait(lambda: even(live), 300, interval=0.25, what="even shares after the join")
    join_s = time.monotonic() - joined_at
    time.sleep(2)  # the last handoffs' events
    handoffs = list(
        ConnectionEvent.objects.filter(
            instance__tenant=tenant, kind=EventKind.DISCONNECT, reason="handoff", at__gte=utc(joined_wall)
        ).values_list("instance_id", "at")
    )
    per_second = collections.Counter(int(at.timestamp() - joined_wall) for _, at in handoffs)
    gaps = []
    for instance_id, ended in handoffs:
        ready = (
            ConnectionEvent.objects.filter(instance_id=instance_id, kind=EventKind.READY, at__gt=ended)
            .order_by("at")
            .values_list("at", flat=True)
            .first()
        )
        if ready is not None:
            gaps.append((ready - ended).total_seconds())
    shares = held()
    stats = control.stats()["instances"]
    figures.update(
        {
            "join_even_within_10_percent_s": round(join_s, 1),
            "join_shares": dict(sorted(shares.items())),
            "join_largest_distance_from_even_percent": round(100 * spread(shares, live), 1),
            "join_moves": len(handoffs),
            "join_moves_peak_per_s": max(per_second.values(), default=0),
            "join_moves_configured_per_s": float(settings.BLAST_REBALANCE_MOVES_PER_S),
            "join_moved_reconnected": len(gaps),
            "join_longest_gap_s": round(max(gaps, default=0.0), 2),
            "join_median_gap_s": round(sorted(gaps)[len(gaps) // 2], 2) if gaps else None,
            "max_concurrent_sessions_per_instance": max(v["max_concurrent"] for v in stats.values()),
        }
    )

    # -- SIGTERM of one ------------------------------------------------------------------
    stopped = live[0]
    workers[stopped].send_signal(signal.SIGTERM)
    remaining = [w for w in live if w != stopped]

    def back_on(live: list[str]) -> bool:
        return connected() == total and set(held()) <= set(live)

    sigterm_s = wait(lambda: back_on(remaining), 300, interval=0.25, what="all back after SIGTERM")
    workers[stopped].wait(60)
    figures["sigterm_all_connected_s"] = round(sigterm_s, 1)
    figures["sigterm_shares"] = dict(sorted(held().items()))

    # -- kill -9 of one ------------------------------------------------------------------
    killed = remaining[0]
    os.kill(workers[killed].pid, signal.SIGKILL)
    remaining = [w for w in remaining if w != killed]
    kill_s = wait(lambda: back_on(remaining), 600, interval=0.25, what="all back after kill -9")
    figures["kill9_all_connected_s"] = round(kill_s, 1)
    figures["kill9_bound_s"] = float(settings.BLAST_LEASE_TTL_S + settings.BLAST_RECOVERY_PERIOD_S)
    figures["kill9_shares"] = dict(sorted(held().items()))
    stats = control.stats()["instances"]
    figures["max_concurrent_sessions_per_instance"] = max(v["max_concurrent"] for v in stats.values())
    figures["database"] = "postgresql"
    figures["cores"] = os.cpu_count()
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
