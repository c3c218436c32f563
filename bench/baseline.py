"""Blast's connection worker beside a plain ``websockets`` reconnect loop, under two gateway faults.

    .venv/bin/python bench/baseline.py [--instances 100] [--minutes 10] [--outage-minutes M]
        [--recovery-timeout 900] [--settle S] [--json out.json] [--timeline out.csv]

The baseline is the reconnect loop exactly as the ``websockets`` library
documents it, with its own built-in backoff and nothing else (no breaker, no
jitter of its own)::

    async for ws in connect(uri, additional_headers=...):
        try:
            async for message in ws:
                ...
        except websockets.ConnectionClosed:
            continue

It speaks just enough of PROTOCOL.md to become ``ready``: the instance token
in ``Authorization``, the ``blast-gateway.v1`` subprotocol, frames read until
the socket closes, and the library's default keepalive (a ping every 20 s, 20 s
for the pong), which is what section 3 asks for with the simulator's
``heartbeat_s`` of 20.

Two scenarios run at the same time, each against both sides, and each side
against a simulator of its own (four simulators, ``--start-paired``):

1. outage: the gateway goes away (every session closed with 1001, as a
   restart does) and every upgrade is refused with 503 for
   ``--outage-minutes``;
2. flapping: every session is closed with 1011 the moment it is ready, for
   ``--minutes``.

The Blast side is one ``run_connection_worker`` and Celery with beat, with
the production policies (any ``BLAST_BREAKER_*``, ``BLAST_RETRY_*`` ... in the
environment is dropped); the baseline side is this file run as
``--baseline-client`` in a process of its own per scenario, so its tight loop
cannot starve the driver. Everything starts, every instance is ready, and the
sessions are held past Blast's flap window (so the first drop is not itself
counted as a flap) before the faults are set.

Measured at the simulators (``/_control/stats``): connection attempts per
instance during the fault window (mean, max, total), upgrades accepted, the
peak attempts and upgrades per second (sampled every second), and the time
after the fault is cleared until every instance is ready again (a live
session at the simulator, and for Blast also ``connected`` in the database,
holding over two samples). Prints a table; ``--json`` also
writes the figures, the command line, the parameters, Blast's policies and
the ``websockets`` backoff constants found in the installed library;
``--timeline`` writes the simulators' attempt and upgrade counters, sampled
every second from the moment each fault was set (CSV).

Not a test: it measures.

About 570 lines: the two clients (Blast and the reconnect loop), the faults
and the measurement are one experiment, kept in one script to be read as one.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import os
import re
import secrets
import shlex
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from simulator.control import SimulatorControl, SimulatorControlError  # noqa: E402

SUBPROTOCOL = "blast-gateway.v1"
SCENARIOS = ("outage", "flapping")
SIDES = ("blast", "websockets")
SAMPLE_S = 1.0
# Policy overrides that would make either side something other than its default.
POLICY_ENV = re.compile(r"^(BLAST_(BREAKER|FLAP|RETRY|BAN|OPEN|HELLO|PING|CLOSE|LEASE|RECOVERY)_|WEBSOCKETS_BACKOFF_)")
COUNTERS = ("attempts", "connects", "refused")


# --- the baseline client ---------------------------------------------------------


async def baseline_session(url: str, token: str, counts: Counter[str]) -> None:
    """One instance's documented reconnect loop; returns only on a fatal error."""
    from websockets import ConnectionClosed
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    headers = {"Authorization": f"Bearer {token}"}
    try:
        async for ws in connect(url, additional_headers=headers, subprotocols=[Subprotocol(SUBPROTOCOL)]):
            counts["opened"] += 1
            try:
                async for message in ws:
                    counts[f"frame:{frame_type(message)}"] += 1
                counts["closed:ok"] += 1
            except ConnectionClosed as exc:
                counts[f"closed:{exc.rcvd.code if exc.rcvd else 1006}"] += 1
                continue
    except Exception as exc:  # a fatal error ends the library's loop
        counts[f"fatal:{type(exc).__name__}"] += 1
        print(f"fatal url={url}: {exc!r}", flush=True)


def frame_type(message: str | bytes) -> str:
    """The ``type`` of a frame, or ``malformed`` (PROTOCOL.md section 5: dropped, never fatal)."""
    if isinstance(message, bytes):
        return "malformed"
    try:
        frame = json.loads(message)
    except ValueError:
        return "malformed"
    kind = frame.get("type") if isinstance(frame, dict) else None
    return kind if isinstance(kind, str) else "malformed"


async def baseline_client(port: int, keys_file: Path) -> None:
    """Run every instance in ``keys_file`` until SIGTERM; then print what was seen."""
    instances = json.loads(keys_file.read_text())
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(
            baseline_session(f"ws://127.0.0.1:{port}/v1/instances/{item['key']}/socket", item["token"], counts)
        )
        for item in instances
    ]
    print(f"baseline client: {len(tasks)} instances on port {port}", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("baseline client counts: " + json.dumps(dict(sorted(counts.items()))), flush=True)


# --- what the two sides are configured with ---------------------------------------


def websockets_constants() -> dict[str, Any]:
    """The reconnect behaviour of the installed ``websockets``, read from the library itself."""
    from websockets import client as sans_io_client
    from websockets.asyncio import client as asyncio_client
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response
    from websockets.version import version

    initial = sans_io_client.BACKOFF_INITIAL_DELAY
    minimum = sans_io_client.BACKOFF_MIN_DELAY
    maximum = sans_io_client.BACKOFF_MAX_DELAY
    factor = sans_io_client.BACKOFF_FACTOR
    schedule = [minimum]
    while schedule[-1] * factor < maximum:
        schedule.append(schedule[-1] * factor)
    defaults = inspect.signature(asyncio_client.connect).parameters
    retried = [
        status
        for status in (401, 403, 404, 429, 500, 502, 503, 504)
        if asyncio_client.process_exception(InvalidStatus(Response(status, "", Headers()))) is None
    ]
    return {
        "version": version,
        "BACKOFF_INITIAL_DELAY": initial,
        "BACKOFF_MIN_DELAY": minimum,
        "BACKOFF_MAX_DELAY": maximum,
        "BACKOFF_FACTOR": factor,
        "delays_s": f"uniform(0, {initial:g}), then "
        + ", ".join(f"{d:.1f}" for d in schedule)
        + f", then {maximum:g} forever",
        "retried_http_statuses": retried,
        "backoff_reset_after_successful_connection": "delays = None" in inspect.getsource(asyncio_client.connect),
        "ping_interval_s": defaults["ping_interval"].default,
        "ping_timeout_s": defaults["ping_timeout"].default,
        "open_timeout_s": defaults["open_timeout"].default,
    }


def blast_policy() -> dict[str, float]:
    from django.conf import settings

    names = [
        "BLAST_BREAKER_THRESHOLD",
        "BLAST_BREAKER_WINDOW_S",
        "BLAST_BREAKER_COOLDOWN_S",
        "BLAST_FLAP_WINDOW_S",
        "BLAST_RETRY_DELAY_TIMEOUT_S",
        "BLAST_RETRY_DELAY_S",
        "BLAST_RETRY_GROWTH_AFTER",
        "BLAST_RETRY_GROWTH_FACTOR",
        "BLAST_RETRY_MAX_DELAY_S",
        "BLAST_RETRY_JITTER",
    ]
    return {name: getattr(settings, name) for name in names}


# --- one side of one scenario ----------------------------------------------------


@dataclass
class Side:
    """One scenario on one side: its simulator, its instances and what was measured."""

    scenario: str
    name: str
    port: int
    control: SimulatorControl
    keys: list[str] = field(default_factory=list)
    gateway_id: int | None = None  # the Blast side's Gateway row
    fault_at: float = 0.0  # time.monotonic()
    fault_wall: float = 0.0  # time.time(), for the worker's event log
    cleared_at: float | None = None
    cleared_wall: float = 0.0
    before: dict[str, dict[str, int]] = field(default_factory=dict)
    after: dict[str, dict[str, int]] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (s since fault, attempts, connects)
    ready_since: tuple[float, dict[str, int]] | None = None
    recovered_s: float | None = None
    ready_at_end: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.scenario}/{self.name}"

    def counters(self) -> dict[str, dict[str, int]]:
        """Per instance key: attempts, connects, refused and current sessions, from the simulator."""
        instances = self.control.stats()["instances"]
        empty = {name: 0 for name in (*COUNTERS, "current")}
        return {
            key: {name: int(instances[key][name]) for name in empty} if key in instances else dict(empty)
            for key in self.keys
        }


def ready_count(side: Side, counters: dict[str, dict[str, int]], connected: Callable[[int], int]) -> int:
    """Instances with a live session at the simulator (and, for Blast, ``connected`` in the database)."""
    live = sum(1 for c in counters.values() if c["current"] >= 1)
    if side.gateway_id is None:
        return live
    return min(live, connected(side.gateway_id))


def note_ready(side: Side, now: float, counters: dict[str, dict[str, int]], ready: int) -> None:
    """Recovered = all ready in two samples at least a second apart with no new upgrade between them."""
    assert side.cleared_at is not None
    connects = {key: c["connects"] for key, c in counters.items()}
    if ready < len(side.keys):
        side.ready_since = None
    elif side.ready_since is None or side.ready_since[1] != connects:
        side.ready_since = (now, connects)
    elif now - side.ready_since[0] >= SAMPLE_S:
        side.recovered_s = side.ready_since[0] - side.cleared_at


def summarize(side: Side) -> dict[str, Any]:
    assert side.cleared_at is not None
    deltas = {name: [side.after[key][name] - side.before[key][name] for key in side.keys] for name in COUNTERS}
    attempts = deltas["attempts"]
    window = [row for row in side.timeline if row[0] <= side.cleared_at - side.fault_at]
    rates = [
        ((a2 - a1) / (t2 - t1), (c2 - c1) / (t2 - t1))
        for (t1, a1, c1), (t2, a2, c2) in itertools.pairwise(window)
        if t2 - t1 >= SAMPLE_S / 2  # a short interval would make a noisy rate
    ]
    return {
        "instances": len(side.keys),
        "window_s": round(side.cleared_at - side.fault_at, 1),
        "attempts_per_instance_mean": round(sum(attempts) / len(attempts), 2),
        "attempts_per_instance_max": max(attempts),
        "attempts_per_instance_min": min(attempts),
        "attempts_total": sum(attempts),
        "upgrades_total": sum(deltas["connects"]),
        "refused_total": sum(deltas["refused"]),
        "peak_attempts_per_s": round(max((r[0] for r in rates), default=0.0), 1),
        "peak_upgrades_per_s": round(max((r[1] for r in rates), default=0.0), 1),
        "recovery_s": None if side.recovered_s is None else round(side.recovered_s, 1),
        "ready_at_end": side.ready_at_end,
        **side.extra,
    }


def print_table(results: dict[str, dict[str, dict[str, Any]]], recovery_timeout: float) -> None:
    header = (
        f"{'scenario':9s} {'side':10s} {'window':>7s} {'att/inst':>9s} {'max':>7s} {'total':>9s} "
        f"{'upgrades':>9s} {'peak att/s':>10s} {'peak upg/s':>10s}  recovery"
    )
    print(header)
    print("-" * len(header))
    for scenario, sides in results.items():
        for name, r in sides.items():
            if r["recovery_s"] is not None:
                recovery = f"{r['recovery_s']:.1f} s"
            else:
                recovery = f"not all ready within {recovery_timeout:g} s ({r['ready_at_end']}/{r['instances']})"
            print(
                f"{scenario:9s} {name:10s} {r['window_s']:>6.0f}s {r['attempts_per_instance_mean']:>9.1f} "
                f"{r['attempts_per_instance_max']:>7d} {r['attempts_total']:>9d} {r['upgrades_total']:>9d} "
                f"{r['peak_attempts_per_s']:>10.1f} {r['peak_upgrades_per_s']:>10.1f}  {recovery}"
            )


# --- the driver ----------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100, help="instances per side and scenario")
    parser.add_argument("--minutes", type=float, default=10.0, help="flapping window")
    parser.add_argument("--outage-minutes", type=float, default=None, help="outage window (default: --minutes)")
    parser.add_argument("--recovery-timeout", type=float, default=900.0, help="seconds to wait for all ready")
    parser.add_argument("--connect-timeout", type=float, default=300.0, help="seconds to get all ready first")
    parser.add_argument(
        "--settle", type=float, default=None, help="seconds to hold all sessions before the faults (flap window + 5)"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--timeline", default=None, help="write attempts and upgrades over time (CSV)")
    parser.add_argument("--baseline-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keys-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.baseline_client:
        if args.port is None or args.keys_file is None:
            parser.error("--baseline-client needs --port and --keys-file")
        asyncio.run(baseline_client(args.port, Path(args.keys_file)))
        return 0
    if args.instances < 1:
        parser.error("--instances must be >= 1")
    for output in (args.json, args.timeline):
        if output:  # fail now, not after the run
            Path(output).parent.mkdir(parents=True, exist_ok=True)
    windows = {
        "outage": 60 * (args.outage_minutes if args.outage_minutes is not None else args.minutes),
        "flapping": 60 * args.minutes,
    }

    tag = uuid.uuid4().hex[:8]
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    database_url = args.database_url or f"sqlite:///{run_dir / f'bench-baseline-{tag}.sqlite3'}"
    dropped = sorted(name for name in os.environ if POLICY_ENV.match(name))
    for name in dropped:
        del os.environ[name]
    env = bench_env(tag, database_url)
    setup_django(env)
    python = sys.executable
    from django.db.models import Count

    from instances import hints
    from instances.models import (
        CircuitBreaker,
        ConnectionEvent,
        EventKind,
        Gateway,
        Instance,
        Status,
        Tenant,
        WorkerHeartbeat,
    )

    constants = websockets_constants()
    policy = blast_policy()
    logs = run_dir / f"bench-baseline-{tag}"
    group = Processes(env, logs)
    start = group.start
    print(f"logs and database: {logs}  {database_url}")
    if dropped:
        print(f"dropped policy overrides from the environment: {', '.join(dropped)}")

    def connected(gateway_id: int) -> int:
        return int(Instance.objects.filter(gateway_id=gateway_id, status=Status.CONNECTED).count())

    def breaker_states(gateway_id: int) -> dict[str, int]:
        rows = CircuitBreaker.objects.filter(instance__gateway_id=gateway_id).values_list("state")
        return dict(rows.annotate(n=Count("id")))

    try:
        sides: list[Side] = []
        for scenario in SCENARIOS:
            for name in SIDES:
                port = free_port()
                start(
                    f"sim-{scenario}-{name}",
                    [python, "manage.py", "run_gateway_sim", "--port", str(port), "--start-paired"],
                )
                sides.append(Side(scenario, name, port, SimulatorControl(f"http://127.0.0.1:{port}", timeout=30)))
        for side in sides:
            side.control.wait_healthy(60)

        tenant = Tenant.objects.create(slug=f"bench-{tag}", name="Bench baseline")
        for side in sides:
            if side.name == "blast":
                gateway = Gateway.objects.create(name=f"bench-{tag}-{side.scenario}", url=f"ws://127.0.0.1:{side.port}")
                side.gateway_id = gateway.id
                create_instances(tenant, gateway, args.instances, prefix=side.scenario[0])
                side.keys = [str(k) for k in Instance.objects.filter(gateway=gateway).values_list("key", flat=True)]
            else:
                items = [{"key": str(uuid.uuid4()), "token": secrets.token_urlsafe(32)} for _ in range(args.instances)]
                side.keys = [item["key"] for item in items]
                keys_file = logs / f"keys-{side.scenario}.json"
                keys_file.write_text(json.dumps(items))
                start(
                    f"baseline-{side.scenario}",
                    [
                        python,
                        str(Path(__file__).resolve()),
                        "--baseline-client",
                        "--port",
                        str(side.port),
                        "--keys-file",
                        str(keys_file),
                    ],
                )
        ids = list(Instance.objects.filter(tenant=tenant).values_list("id", flat=True))

        start("worker", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}"])
        start("celery", celery_argv(env, logs))
        wait(
            lambda: WorkerHeartbeat.objects.filter(worker_id=f"bench-{tag}").exists(),
            60,
            what="worker heartbeat",
        )
        hints.send(ids)

        def everyone_ready() -> bool:
            return all(ready_count(side, side.counters(), connected) == len(side.keys) for side in sides)

        took = wait(everyone_ready, args.connect_timeout, what="every instance ready on all four simulators")
        print(f"all {len(sides) * args.instances} instances ready on both sides in {took:.1f}s")
        # A session dropped within the flap window of its `ready` counts as a
        # failure for Blast; start from sessions older than that, as in a
        # steady state.
        settle = args.settle if args.settle is not None else float(policy["BLAST_FLAP_WINDOW_S"]) + 5
        time.sleep(settle)
        if not everyone_ready():
            raise SystemExit(f"an instance lost its session in the {settle:g}s before the faults")
        print(f"held them {settle:g}s; setting the faults")

        for side in sides:
            side.before = side.counters()
            if side.scenario == "outage":
                side.control.set_fault("refuse", status=503)
                side.control.restart()  # refusing upgrades alone leaves live sessions alone
            else:
                side.control.set_fault("close", code=1011)
            side.fault_at, side.fault_wall = time.monotonic(), time.time()
            totals = [sum(c[name] for c in side.before.values()) for name in ("attempts", "connects")]
            side.timeline.append((0.0, totals[0], totals[1]))
        began = min(side.fault_at for side in sides)
        print(f"outage for {windows['outage']:g}s and flapping for {windows['flapping']:g}s, both sides at once")

        pending = list(sides)
        tick = began
        while pending:
            now = time.monotonic()
            for side in sides:
                if side.cleared_at is None and now - side.fault_at >= windows[side.scenario]:
                    side.after = side.counters()
                    side.control.clear_faults()
                    side.cleared_at, side.cleared_wall = time.monotonic(), time.time()
                    if side.gateway_id is not None:
                        side.extra["breakers_at_window_end"] = breaker_states(side.gateway_id)
                    print(f"{side.label}: fault cleared after {side.cleared_at - side.fault_at:.0f}s")
            for side in list(pending):
                try:
                    counters = side.counters()
                except (OSError, SimulatorControlError) as exc:
                    print(f"{side.label}: stats failed, sample skipped: {exc}")
                    continue
                sampled = time.monotonic()
                totals = [sum(c[name] for c in counters.values()) for name in ("attempts", "connects")]
                side.timeline.append((sampled - side.fault_at, totals[0], totals[1]))
                if side.cleared_at is None:
                    continue
                side.ready_at_end = ready_count(side, counters, connected)
                note_ready(side, sampled, counters, side.ready_at_end)
                if side.recovered_s is not None:
                    print(f"{side.label}: all ready {side.recovered_s:.1f}s after the fault was cleared")
                    pending.remove(side)
                elif sampled - side.cleared_at > args.recovery_timeout:
                    print(f"{side.label}: not all ready within {args.recovery_timeout:g}s")
                    pending.remove(side)
            tick = max(tick + SAMPLE_S, time.monotonic())  # late: sample now, never in a burst
            time.sleep(max(0.0, tick - time.monotonic()))

        results: dict[str, dict[str, dict[str, Any]]] = {scenario: {} for scenario in SCENARIOS}
        for side in sides:
            if side.gateway_id is not None:
                side.extra["breakers_at_end"] = breaker_states(side.gateway_id)
                side.extra["worker_recorded_attempts"] = ConnectionEvent.objects.filter(
                    instance__gateway_id=side.gateway_id,
                    kind=EventKind.ATTEMPT,
                    at__gte=utc(side.fault_wall),
                    at__lt=utc(side.cleared_wall),
                ).count()
            side.extra["max_concurrent_per_instance"] = max(
                v["max_concurrent"] for k, v in side.control.stats()["instances"].items() if k in side.keys
            )
            results[side.scenario][side.name] = summarize(side)

        print()
        print_table(results, args.recovery_timeout)
        print()
        print(f"websockets {constants['version']} backoff: {constants['delays_s']}; ", end="")
        print(
            f"reset after a successful connection: {constants['backoff_reset_after_successful_connection']}; ", end=""
        )
        print(f"HTTP statuses retried: {constants['retried_http_statuses']}")
        print("blast policy: " + ", ".join(f"{k.removeprefix('BLAST_')}={v:g}" for k, v in policy.items()))
        for side in sides:
            if side.gateway_id is not None:
                r = results[side.scenario][side.name]
                print(
                    f"{side.label}: breakers at window end {r['breakers_at_window_end']}, "
                    f"at the end {r['breakers_at_end']}; "
                    f"attempts the worker recorded in the window {r['worker_recorded_attempts']}"
                )
        if args.json:
            figures = {
                "command": shlex.join([sys.executable, *sys.argv]),
                "parameters": {
                    "instances_per_side": args.instances,
                    "outage_s": windows["outage"],
                    "flapping_s": windows["flapping"],
                    "recovery_timeout_s": args.recovery_timeout,
                    "outage_fault": {"fault": "refuse", "status": 503, "then": "restart (sessions closed with 1001)"},
                    "settle_s": settle,
                    "flapping_fault": {"fault": "close", "code": 1011},
                    "sample_s": SAMPLE_S,
                    "database": database_url.split(":", 1)[0],
                    "dropped_environment": dropped,
                },
                "websockets": constants,
                "blast_policy": policy,
                "results": results,
            }
            Path(args.json).write_text(json.dumps(figures, indent=2))
        if args.timeline:
            rows = [
                f"{side.scenario},{side.name},{t:.1f},{attempts},{connects}\n"
                for side in sides
                for t, attempts, connects in side.timeline
            ]
            Path(args.timeline).write_text("scenario,side,seconds_since_fault,attempts,upgrades\n" + "".join(rows))
        return 0
    finally:
        group.stop()


if __name__ == "__main__":
    raise SystemExit(main())
