"""The chaos soak: random faults and killed workers, then the invariants.

    .venv/bin/python bench/chaos_soak.py --instances 1000 --minutes 30 --seed 1

Starts its own gateway simulator, Celery with beat and ``--workers``
connection workers (default 2), creates N instances and a steady trickle of
messages, then for M minutes injects random faults through the simulator's
control API (refused upgrades, hangs, closes before hello, closes with every
close code of the protocol, silent peers, malformed frames, full gateway
restarts) and kills (``kill -9``) or stops (SIGTERM) workers at random,
starting a replacement each time. Then the faults stop, an operator
reconnects what a terminal close stopped, and it checks and prints:

1. no worker ended on its own (only the ones the soak killed or stopped);
2. no exception was left unretrieved, no traceback in any worker log;
3. the simulator never saw two concurrent sessions for one instance;
4. every message was delivered exactly once (its row says sent) or failed
   with a reason;
5. every breaker transition in the event log is one the policy allows;
6. every instance is ready again.

Exits 1 when an invariant fails. The test suite runs a short form of it.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Processes,
    bench_env,
    celery_argv,
    create_database,
    drop_database,
    free_port,
    setup_django,
    wait,
)

TERMINAL_CODES = [4401, 4403, 4405, 4411, 4440]
CLOSE_CODES = [1000, 1001, 4408, 4428, 4503, 4515, 4500, 4402, 4999, *TERMINAL_CODES]
REFUSALS = [429, 500, 502, 503]

FAST = {
    "BLAST_LEASE_TTL_S": "4",
    "BLAST_OPEN_TIMEOUT_S": "3",
    "BLAST_HELLO_TIMEOUT_S": "3",
    "BLAST_PING_INTERVAL_S": "2",
    "BLAST_PING_TIMEOUT_S": "3",
    "BLAST_CLOSE_TIMEOUT_S": "1",
    "BLAST_RETRY_DELAY_S": "1",
    "BLAST_RETRY_DELAY_TIMEOUT_S": "2",
    "BLAST_RETRY_MAX_DELAY_S": "5",
    "BLAST_BAN_PAUSE_S": "10",
    "BLAST_BREAKER_COOLDOWN_S": "10",
    "BLAST_RECOVERY_PERIOD_S": "1",
    "BLAST_HEARTBEAT_INTERVAL_S": "1",
    "BLAST_SEND_DELAY_MIN_S": "0",
    "BLAST_SEND_DELAY_MAX_S": "0",
    "BLAST_HOURLY_CAP": "0",
    "BLAST_DAILY_CAP": "0",
}

# Breaker transitions the policy allows: (from, event) pairs.
ALLOWED = {
    ("closed", "breaker_opened"),
    ("half_open", "breaker_opened"),
    ("open", "breaker_half_open"),
    ("half_open", "breaker_closed"),
    ("open", "breaker_closed"),  # a forced retry that worked, or a reset
}
NEXT = {"breaker_opened": "open", "breaker_half_open": "half_open", "breaker_closed": "closed"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--messages-per-second", type=float, default=5.0)
    parser.add_argument("--fault-interval", type=float, default=1.0, help="seconds between two faults")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (postgres://user@host:port/db): the soak creates a database of its own there "
        "and drops it at the end; default: a fresh SQLite file",
    )
    parser.add_argument("--recovery-timeout", type=float, default=180.0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    tag = uuid.uuid4().hex[:8]
    run = ROOT / ".run" / f"chaos-{tag}"
    run.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{run / 'db.sqlite3'}"
    if args.database_url:
        database_url = create_database(args.database_url, f"blast_chaos_{tag}")
    env = bench_env(tag, database_url, prefix="chaos", **FAST, LOG_LEVEL="INFO")
    setup_django(env)
    python = sys.executable
    from campaigns.models import Message, MessageStatus
    from instances import commands, hints
    from instances.models import ConnectionEvent, Gateway, Instance, Status, Tenant
    from simulator.control import SimulatorControl

    group = Processes(env, run)
    workers: dict[str, Any] = {}
    stopped_by_soak: list[tuple[str, int | None]] = []
    print(f"chaos soak {tag}: {args.instances} instances, {args.minutes} min, seed {args.seed}; logs in {run}")

    def start_worker() -> None:
        name = f"w{len(workers)}-{tag}"
        workers[name] = group.start(name, [python, "manage.py", "run_connection_worker", "--worker-id", name])

    try:
        port = free_port()
        group.start(
            "gateway",
            [
                python,
                "manage.py",
                "run_gateway_sim",
                "--port",
                str(port),
                "--start-paired",
                "--receipt-delay",
                "-1",
                "--heartbeat-s",
                "2",
                "--seed",
                str(args.seed),
            ],
        )
        control = SimulatorControl(f"http://127.0.0.1:{port}")
        control.wait_healthy(30)
        group.start("celery", celery_argv(env, run, loglevel="INFO"))
        for _ in range(args.workers):
            start_worker()

        tenant = Tenant.objects.create(slug=f"chaos-{tag}", name="Chaos")
        gateway = Gateway.objects.create(name=f"chaos-{tag}", url=f"ws://127.0.0.1:{port}")
        instances = [Instance(tenant=tenant, name=f"c{n:05d}", gateway=gateway) for n in range(args.instances)]
        for instance in instances:
            instance.save()
        for instance in instances:
            commands.connect(instance, actor="chaos")
        ids = [i.pk for i in instances]
        keys = {i.pk: str(i.key) for i in instances}

        def all_connected() -> bool:
            return Instance.objects.filter(pk__in=ids, status=Status.CONNECTED).count() == len(ids)

        print(f"all connected in {wait(all_connected, 300, what='all connected'):.1f}s")

        # A steady trickle of messages while the faults run.
        stop_trickle = threading.Event()

        def trickle() -> None:
            from django.db import connection

            pick = random.Random(args.seed + 1)  # its own, so the fault sequence stays the seed's
            n = 0
            while not stop_trickle.wait(1.0):
                batch = [
                    Message(
                        tenant=tenant, instance_id=pick.choice(ids), to=f"+1201555{n + k:04d}"[:12], text=f"m{n + k}"
                    )
                    for k in range(max(1, int(args.messages_per_second)))
                ]
                n += len(batch)
                Message.objects.bulk_create(batch)
                hints.send({m.instance_id for m in batch})
            connection.close()

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()

        actions = Counter()
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(args.fault_interval * rng.uniform(0.5, 1.5))
            key = keys[rng.choice(ids)]
            roll = rng.random()
            try:
                if roll < 0.15:
                    control.set_fault(
                        "refuse",
                        instance=key,
                        status=rng.choice(REFUSALS),
                        count=rng.randint(1, 3),
                        retry_after=rng.choice([0, 1, 2]),
                    )
                    actions["refuse"] += 1
                elif roll < 0.22:
                    control.set_fault("hang", instance=key, count=1)
                    actions["hang"] += 1
                elif roll < 0.29:
                    control.set_fault(
                        "close_before_hello", instance=key, code=rng.choice([1011, 4503, "abort"]), count=1
                    )
                    actions["close_before_hello"] += 1
                elif roll < 0.55:
                    code = rng.choice(CLOSE_CODES)
                    control.close(key, code)
                    actions[f"close {code}"] += 1
                elif roll < 0.62:
                    control.set_fault("silent", instance=key, count=1)
                    actions["silent"] += 1
                elif roll < 0.72:
                    control.set_fault("malformed", instance=key, count=rng.randint(1, 8), interval_s=0)
                    actions["malformed"] += 1
                elif roll < 0.76:
                    control.restart(code=rng.choice([1001, 1012, "abort"]) if rng.random() < 0.8 else 1001)
                    actions["gateway restart"] += 1
                elif roll < 0.88:
                    name = rng.choice([n for n, p in workers.items() if p.poll() is None])
                    workers[name].kill()
                    workers[name].wait(timeout=30)
                    stopped_by_soak.append((name, workers[name].returncode))
                    start_worker()
                    actions["kill -9 worker"] += 1
                else:
                    name = rng.choice([n for n, p in workers.items() if p.poll() is None])
                    workers[name].send_signal(signal.SIGTERM)
                    workers[name].wait(timeout=60)
                    stopped_by_soak.append((name, workers[name].returncode))
                    start_worker()
                    actions["SIGTERM worker"] += 1
            except Exception as exc:  # a control call that failed is a finding, not the end
                actions[f"control error {type(exc).__name__}"] += 1
        stop_trickle.set()
        trickler.join(timeout=30)
        print("faults injected:", dict(sorted(actions.items())))

        # The faults stop; an operator reconnects what a terminal close stopped:
        # a connect clears a logout or a replacement, a forbidden or halted
        # instance takes a force retry (docs/OPERATIONS.md, "Security").
        control.clear_faults()
        for instance in Instance.objects.filter(pk__in=ids, status__in=[Status.LOGGED_OUT, Status.REPLACED]):
            commands.connect(instance, actor="chaos-operator")
        for instance in Instance.objects.filter(pk__in=ids, status__in=[Status.FORBIDDEN, Status.HALTED]):
            commands.connect(instance, actor="chaos-operator")
            commands.force_retry(instance, actor="chaos-operator")
        for instance in Instance.objects.filter(pk__in=ids, status=Status.CIRCUIT_OPEN):
            commands.reset_breaker(instance, actor="chaos-operator")

        recovered = True
        try:
            wait(all_connected, args.recovery_timeout, what="every instance ready again")
        except SystemExit:
            recovered = False

        def messages_done() -> bool:
            return not Message.objects.filter(tenant=tenant, status=MessageStatus.QUEUED).exists()

        try:
            wait(messages_done, args.recovery_timeout, what="every message done")
        except SystemExit:
            pass

        # -- the invariants ------------------------------------------------------------
        results: list[tuple[str, bool, str]] = []
        died = [n for n, p in workers.items() if p.poll() is not None and n not in dict(stopped_by_soak)]
        # 0: a clean stop; -9: our kill; -15: our SIGTERM landed before the
        # worker had installed its handler (still starting up).
        bad_exits = [(n, rc) for n, rc in stopped_by_soak if rc not in (0, -signal.SIGKILL, -signal.SIGTERM)]
        results.append(("no worker crashed on its own", not died and not bad_exits, f"died={died} exits={bad_exits}"))

        logs = {p.name: p.read_text(errors="replace") for p in run.glob("*.log")}
        traced = [n for n, text in logs.items() if n.startswith("w") and "Traceback" in text]
        unretrieved = [n for n, text in logs.items() if "never retrieved" in text]
        results.append(
            (
                "no exception left unretrieved",
                not traced and not unretrieved,
                f"tracebacks in {traced}, unretrieved in {unretrieved}",
            )
        )

        stats = control.stats()
        doubled = {k: v["max_concurrent"] for k, v in stats["instances"].items() if v["max_concurrent"] > 1}
        results.append(("max concurrent sessions per instance is 1", not doubled, f"{doubled}"))

        deliveries = stats["deliveries"]
        rows = list(Message.objects.filter(tenant=tenant).select_related("instance"))
        twice = [m.pk for m in rows if deliveries.get(f"{m.instance.key}:{m.client_id}", 0) > 1]
        disagree = [
            m.pk
            for m in rows
            if (m.status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ))
            != (deliveries.get(f"{m.instance.key}:{m.client_id}", 0) == 1)
            or (m.status == MessageStatus.FAILED and not m.failure_reason)
        ]
        queued = sum(1 for m in rows if m.status == MessageStatus.QUEUED)
        results.append(
            (
                "every message delivered once or failed with a reason",
                not twice and not disagree and queued == 0,
                f"{len(rows)} messages, {len(twice)} delivered twice, {len(disagree)} rows disagree, {queued} queued",
            )
        )

        illegal: list[str] = []
        transitions = 0
        for instance_id in ids:
            state = "closed"
            for kind, _at in (
                ConnectionEvent.objects.filter(instance_id=instance_id, kind__in=[*NEXT, "reset_breaker"])
                .order_by("id")
                .values_list("kind", "at")
            ):
                if kind == "reset_breaker":
                    state = "closed"
                    continue
                transitions += 1
                if (state, kind) not in ALLOWED:
                    illegal.append(f"{instance_id}: {state} -> {kind}")
                state = NEXT[kind]
        results.append(("every breaker transition allowed", not illegal, f"{transitions} transitions; {illegal[:5]}"))

        not_ready = list(
            Instance.objects.filter(pk__in=ids)
            .exclude(status=Status.CONNECTED)
            .values_list("name", "status", "last_reason")
        )
        results.append(("every instance ready again", recovered and not not_ready, f"{not_ready[:5]}"))

        print()
        for name, ok, detail in results:
            print(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})")
        failed = [name for name, ok, _ in results if not ok]
        print()
        print("all invariants hold" if not failed else f"{len(failed)} invariants failed")
        return 1 if failed else 0
    finally:
        group.stop()
        if args.database_url:
            from django.db import connections

            connections.close_all()
            drop_database(args.database_url, f"blast_chaos_{tag}")


if __name__ == "__main__":
    raise SystemExit(main())
