"""One connection worker holding N gateway sessions: what it costs, how it heals.

    .venv/bin/python bench/connections.py --sessions 10000 [--outage-seconds 120]
        [--json out.json] [--timeline out.csv]

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
  events the worker wrote;
- then (``--outage-seconds``, 120 by default, 0 to skip) a gateway outage:
  the N sessions held past the flap window, the gateway restarts (every
  session closed with 1001) and refuses every upgrade with 503 for that long,
  then answers again. Printed: the attempts per instance during the outage
  (at the simulator), when the worker saw the gateway go down and come back
  (its ``GatewayEvent`` rows), the time after it answers again until 99% and
  100% are connected, the peak upgrade requests per whole second after it
  answers again as the platform sent them (the ramp's own count of what its
  gate let through, cluster-wide) and as the simulator read them (its own
  per-second count; a simulator that stalls on the shared cores reads a
  second's requests in the next), beside the configured
  ``BLAST_GATEWAY_CONNECT_RATE``, the breakers open at the end and the
  alerts raised.

``--timeline`` writes connected-over-time for both phases (CSV: ``phase``
restart, seconds since the restart; ``phase`` outage, seconds since the
gateway answered again, negative during the outage, with the simulator's
attempts since the outage began).

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Processes,
    alerts_raised,
    bench_env,
    bench_tenant,
    celery_argv,
    command_line,
    create_instances,
    run_facts,
    setup_django,
    start_simulator,
    utc,
    wait,
)

SAMPLE_S = 1.0  # the simulator's counters during the outage phase
RECOVERY_TIMEOUT_S = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--outage-seconds", type=float, default=120.0, help="gateway outage (503) after the restart phase; 0: none"
    )
    parser.add_argument(
        "--timeline", default=None, help="write connected-over-time after the restart and through the outage (CSV)"
    )
    args = parser.parse_args()
    if args.outage_seconds < 0:
        parser.error("--outage-seconds must be >= 0")
    facts = run_facts()

    tag = uuid.uuid4().hex[:8]
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    database_url = args.database_url or f"sqlite:///{run_dir / f'bench-connections-{tag}.sqlite3'}"
    env = bench_env(tag, database_url)
    setup_django(env)
    python = sys.executable
    from django.db.models import Count

    from instances import hints
    from instances.models import CircuitBreaker, ConnectionEvent, GatewayEvent, Instance, Status

    logs = run_dir / f"bench-connections-{tag}"
    group = Processes(env, logs)
    start = group.start

    try:
        simulator = start_simulator(group)
        control = simulator.control
        tenant, gateway = bench_tenant(tag, simulator)
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

        def breaker_states() -> dict[str, int]:
            rows = CircuitBreaker.objects.filter(instance__tenant=tenant).values_list("state")
            return dict(rows.annotate(n=Count("id")))

        breakers = breaker_states()
        restart_downs = GatewayEvent.objects.filter(gateway=gateway, kind="down").count()
        figures: dict[str, object] = {
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
            "restart_gateway_downs": restart_downs,
            "database": database_url.split(":", 1)[0],
            "cores": os.cpu_count(),
        }
        for name, value in figures.items():
            print(f"{name:40s} {value}")
        histogram = " ".join(f"{s}s:{per_second[s]}" for s in sorted(per_second))
        print(f"attempts per second after restart: {histogram}")
        rows = [("restart", t, c, None) for t, c in timeline]
        outage_per_second: dict[int, int] = {}
        if args.outage_seconds > 0:
            outage = Outage(control, gateway.id, tenant.id, len(ids), args.outage_seconds, breaker_states)
            outage.run()
            figures.update(outage.figures())
            outage_per_second = outage.per_second
            rows += [("outage", t, c, a) for t, c, a in outage.timeline]
            for name, value in outage.figures().items():
                print(f"{name:40s} {value}")
            histogram = " ".join(f"{s}s:{n}" for s, n in sorted(outage_per_second.items()))
            print(f"attempts per second after the gateway answered again (worker's events): {histogram}")
            histogram = " ".join(f"{s}s:{n}" for s, n in outage.platform_per_second.items())
            print(f"upgrade requests per second after the gateway answered again (platform's count): {histogram}")
            histogram = " ".join(f"{s}s:{n}" for s, n in outage.gateway_per_second.items())
            print(f"upgrade requests per second after the gateway answered again (gateway's count): {histogram}")
        if args.json:
            result = {
                "command": command_line(),
                **facts,
                **figures,
                "attempts_per_second": per_second,
            }
            if args.outage_seconds > 0:
                result["outage_attempts_per_second"] = outage_per_second
                result["outage_gateway_attempts_per_second"] = outage.gateway_per_second
                result["outage_platform_attempts_per_second"] = outage.platform_per_second
            Path(args.json).write_text(json.dumps(result, indent=2))
        if args.timeline:
            Path(args.timeline).write_text(
                "phase,seconds,connected,simulator_attempts\n"
                + "".join(f"{phase},{t},{c},{'' if a is None else a}\n" for phase, t, c, a in rows)
            )
        return 0
    finally:
        group.stop()


class Outage:
    """The outage phase: every session held, the gateway away (503) for a
    while, then back; what it cost and how fast the worker healed."""

    def __init__(
        self,
        control: Any,
        gateway_id: int,
        tenant_id: int,
        sessions: int,
        seconds: float,
        breaker_states: Callable[[], dict[str, int]],
    ) -> None:
        self.control = control
        self.gateway_id = gateway_id
        self.tenant_id = tenant_id
        self.sessions = sessions
        self.seconds = seconds
        self.breaker_states = breaker_states
        self.timeline: list[tuple[float, int, int | None]] = []  # (s since back, connected, attempts since fault)
        self.per_second: dict[int, int] = {}
        self.gateway_per_second: dict[int, int] = {}
        self.platform_per_second: dict[int, int] = {}
        self.result: dict[str, Any] = {}

    def connected(self) -> int:
        from instances.models import Instance, Status

        return int(Instance.objects.filter(tenant_id=self.tenant_id, status=Status.CONNECTED).count())

    def attempts(self) -> dict[str, int]:
        return {key: int(c["attempts"]) for key, c in self.control.stats()["instances"].items()}

    def run(self) -> None:
        from django.conf import settings
        from django.db.models import Max

        from instances.models import ConnectionEvent, GatewayEvent
        from monitoring.alerts import CURSOR_KEY
        from monitoring.models import AlertState

        # Sessions dropped within the flap window of their `ready` are flaps,
        # not an outage: start from sessions older than that.
        hold = float(settings.BLAST_FLAP_WINDOW_S) + 5
        time.sleep(hold)
        if self.connected() != self.sessions:
            raise SystemExit(f"a session was lost in the {hold:g}s before the outage")
        before = self.attempts()
        fault_wall, fault_at = time.time(), time.monotonic()
        self.control.set_fault("refuse", status=503)
        self.control.restart()
        print(f"gateway away (503) for {self.seconds:g}s")
        samples: list[tuple[float, int, int | None]] = []  # (s since fault, connected, attempts since fault)
        tick = fault_at
        while time.monotonic() - fault_at < self.seconds:
            total = sum(self.attempts().values()) - sum(before.values())
            samples.append((time.monotonic() - fault_at, self.connected(), total))
            tick = max(tick + SAMPLE_S, time.monotonic())
            time.sleep(max(0.0, min(tick, fault_at + self.seconds) - time.monotonic()))
        during = self.attempts()
        back_wall, back_at = time.time(), time.monotonic()
        self.control.clear_faults()
        print(f"gateway answers again after {back_at - fault_at:.0f}s")
        window = [during.get(key, 0) - before.get(key, 0) for key in during]

        ready_99 = ready_all = None
        after: list[tuple[float, int]] = []  # (s since back, simulator attempts since fault)
        last_counters = 0.0
        while time.monotonic() - back_at < RECOVERY_TIMEOUT_S:
            now = time.monotonic()
            attempts: int | None = None
            if now - last_counters >= SAMPLE_S:
                last_counters = now
                attempts = sum(self.attempts().values()) - sum(before.values())
                after.append((time.monotonic() - back_at, attempts))
            count = self.connected()
            elapsed = time.monotonic() - back_at
            samples.append((elapsed + (back_at - fault_at), count, attempts))
            if ready_99 is None and count >= 0.99 * self.sessions:
                ready_99 = elapsed
            if count == self.sessions:
                ready_all = elapsed
                break
            time.sleep(0.5)
        # One more second of the simulator's counters: the last upgrades.
        time.sleep(SAMPLE_S)
        after.append((time.monotonic() - back_at, sum(self.attempts().values()) - sum(before.values())))
        self.timeline = [(round(t - (back_at - fault_at), 2), c, a) for t, c, a in samples]

        # The gateway's own count of upgrade requests per whole second, from the second it answered again.
        counted = self.control.stats()["attempts_per_second"]
        self.gateway_per_second = {
            int(second) - int(back_wall): n
            for second, n in sorted(counted.items(), key=lambda kv: int(kv[0]))
            if int(second) >= int(back_wall)
        }
        # What the platform's ramp let through, per whole second, cluster-wide
        # (engine.outages counts each upgrade right before its request is written).
        import redis

        key = f"{settings.BLAST_REDIS_PREFIX}:gw:{self.gateway_id}:sent"
        sent = redis.Redis.from_url(settings.REDIS_URL).hgetall(key)
        self.platform_per_second = {
            int(second) - int(back_wall): int(n)
            for second, n in sorted(sent.items(), key=lambda kv: int(kv[0]))
            if int(second) >= int(back_wall)
        }
        events = list(GatewayEvent.objects.filter(gateway_id=self.gateway_id, at__gte=utc(fault_wall)).order_by("at"))
        downs = [e for e in events if e.kind == "down"]
        ups = [e for e in events if e.kind == "up"]
        attempts_after = [
            at.timestamp() - back_wall
            for at in ConnectionEvent.objects.filter(
                instance__tenant_id=self.tenant_id, kind="attempt", at__gte=utc(back_wall)
            ).values_list("at", flat=True)
        ]
        self.per_second = dict(sorted(collections.Counter(int(a) for a in attempts_after).items()))

        # Breaker alerts come from the evaluator (a beat job): count them once
        # it has read every event written so far.
        last_event = ConnectionEvent.objects.aggregate(last=Max("id"))["last"] or 0

        def evaluated() -> bool:
            data = AlertState.objects.filter(key=CURSOR_KEY).values_list("data", flat=True).first() or {}
            return int(data.get("last_id") or 0) >= last_event

        wait(evaluated, 180, interval=1.0, what="the alert evaluator to read every event")
        breakers = self.breaker_states()
        self.result = {
            "outage_s": round(back_at - fault_at, 1),
            "outage_hold_s": hold,
            "outage_attempts_per_instance_mean": round(sum(window) / max(len(window), 1), 2),
            "outage_attempts_per_instance_max": max(window, default=0),
            "outage_attempts_total": sum(window),
            "outage_gateway_downs": len(downs),
            "outage_gateway_ups": len(ups),
            "outage_down_after_fault_s": round(downs[0].at.timestamp() - fault_wall, 1) if downs else None,
            "outage_up_after_back_s": round(ups[-1].at.timestamp() - back_wall, 1) if ups else None,
            "outage_probes": sum(int(e.data.get("probes", 0)) for e in ups),
            "outage_ready_99_percent_s": None if ready_99 is None else round(ready_99, 1),
            "outage_ready_all_s": None if ready_all is None else round(ready_all, 1),
            "outage_peak_attempts_per_s": max(self.platform_per_second.values(), default=0),
            "outage_gateway_peak_attempts_per_s": max(self.gateway_per_second.values(), default=0),
            "outage_worker_peak_attempts_per_s": max(self.per_second.values(), default=0),
            "gateway_connect_rate_per_s": float(settings.BLAST_GATEWAY_CONNECT_RATE),
            "outage_breakers": breakers,
            "outage_breakers_open": breakers.get("open", 0) + breakers.get("half_open", 0),
            "outage_alerts": alerts_raised(self.gateway_id, fault_wall),
        }

    def figures(self) -> dict[str, Any]:
        return dict(self.result)


if __name__ == "__main__":
    raise SystemExit(main())
