"""Blast's connection worker beside a plain ``websockets`` reconnect loop, under four gateway faults.

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
``heartbeat_s`` of 20. It counts its own attempts (``process_exception``
wrapped: the library's own function decides, the wrapper only counts), for
the fault during which no simulator is there to count them.

Four scenarios run at the same time, each against both sides, and each side
against a simulator of its own (eight simulators, ``--start-paired``):

1. outage: the gateway goes away (every session closed with 1001, as a
   restart does) and every upgrade is refused with 503 for
   ``--outage-minutes``;
2. refused: the gateway process is killed (its sessions end without a close
   frame, 1006) and every connection is refused at TCP for
   ``--outage-minutes``; then a new simulator process starts on the same
   port (it trusts tokens on first use and starts paired, so it accepts the
   same instances);
3. timeout: every session is closed with 1001 and every upgrade is accepted
   at TCP and never answered (the ``hang`` fault) for ``--outage-minutes``;
   upgrades left hanging when it ends wait for their client's open timeout;
4. flapping: every session is closed with 1011 the moment it is ready, for
   ``--minutes``.

The Blast side is one ``run_connection_worker`` and Celery with beat, with
the production policies (any ``BLAST_BREAKER_*``, ``BLAST_RETRY_*``,
``BLAST_GATEWAY_DOWN_*`` ... in the environment is dropped, so the settings'
defaults apply); the baseline side is this file run as ``--baseline-client``
in a process of its own per scenario, so its tight loop cannot starve the
driver. Everything starts, every instance is ready, and the sessions are held
past Blast's flap window (so the first drop is not itself counted as a flap)
before the faults are set.

Measured at the simulators (``/_control/stats``): connection attempts per
instance during the fault window (mean, max, total), upgrades accepted, the
peak attempts and upgrades per second (sampled every second) during the
window and after it, and the time after the fault is cleared (for
``refused``: after the new process answers) until every instance is ready
again (a live session at the simulator, and for Blast also ``connected`` in
the database, holding over two samples). During ``refused`` no simulator
counts: its attempts are the clients' own (Blast: the attempt events its
worker wrote; the baseline: its counter), and the clients' counts are kept
for every scenario, to be compared with the simulators'. For Blast also: the
gateway's transitions (``GatewayEvent`` rows), the alerts raised (by kind,
once the alert evaluator has read every event), and the breakers at the end
of the window and at the end.

Prints a table; ``--json`` also writes the figures, the command line, the
parameters, Blast's policies and the ``websockets`` backoff constants found
in the installed library; ``--timeline`` writes the attempt and upgrade
counters, sampled every second from the moment each fault was set (CSV: the
simulators', and the clients' own attempt counts).

Not a test: it measures.

About 800 lines: the two clients (Blast and the reconnect loop), the faults
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
import signal
import subprocess
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
    alerts_raised,
    bench_env,
    celery_argv,
    command_line,
    create_instances,
    free_port,
    run_facts,
    setup_django,
    utc,
    wait,
)
from simulator.control import SimulatorControl, SimulatorControlError  # noqa: E402

SUBPROTOCOL = "blast-gateway.v1"
OUTAGES = ("outage", "refused", "timeout")
SCENARIOS = (*OUTAGES, "flapping")
SIDES = ("blast", "websockets")
SAMPLE_S = 1.0
# Policy overrides that would make either side something other than its
# default. Only the gateway-outage policies of BLAST_GATEWAY_*: nothing else
# of that prefix is a policy.
POLICY_ENV = re.compile(
    r"^(BLAST_(BREAKER|FLAP|RETRY|BAN|OPEN|HELLO|PING|CLOSE|LEASE|RECOVERY|GATEWAY_DOWN|GATEWAY_PROBE|GATEWAY_CONNECT)_"
    r"|WEBSOCKETS_BACKOFF_)"
)
COUNTERS = ("attempts", "connects", "refused", "hung")
FAULTS: dict[str, dict[str, Any]] = {
    "outage": {"fault": "refuse", "status": 503, "then": "restart (sessions closed with 1001)"},
    "refused": {
        "fault": "the simulator process killed (sessions end without a close frame, 1006; TCP refused)",
        "then": "a new simulator process on the same port once the window is over",
    },
    "timeout": {"fault": "hang (TCP accepted, upgrade never answered)", "then": "restart (sessions closed with 1001)"},
    "flapping": {"fault": "close", "code": 1011},
}
BACK_TIMEOUT_S = 60.0  # for a new simulator process to answer on the old port


# --- the baseline client ---------------------------------------------------------


async def baseline_session(url: str, key: str, token: str, counts: Counter[str], attempts: Counter[str]) -> None:
    """One instance's documented reconnect loop; returns only on a fatal error.

    ``process_exception`` is the library's own, wrapped only to count the
    failed attempts: no simulator counts them while the gateway is gone.
    """
    from websockets import ConnectionClosed
    from websockets.asyncio.client import connect, process_exception
    from websockets.typing import Subprotocol

    def counted(exc: Exception) -> Exception | None:
        attempts[key] += 1
        return process_exception(exc)

    headers = {"Authorization": f"Bearer {token}"}
    try:
        async for ws in connect(
            url, additional_headers=headers, subprotocols=[Subprotocol(SUBPROTOCOL)], process_exception=counted
        ):
            attempts[key] += 1
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


async def baseline_client(port: int, keys_file: Path, counts_file: Path) -> None:
    """Run every instance in ``keys_file`` until SIGTERM; then print what was seen.

    Its attempts per instance go to ``counts_file`` every second and at once
    on SIGUSR1, each write numbered (``seq``), so that the driver can take
    them at the moment a fault starts or ends.
    """
    instances = json.loads(keys_file.read_text())
    counts: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    written = itertools.count(1)

    def write_counts() -> None:
        data = {"seq": next(written), "at": time.time(), "attempts": dict(attempts)}
        partial = counts_file.with_name(counts_file.name + ".partial")
        partial.write_text(json.dumps(data))
        os.replace(partial, counts_file)

    async def every_second() -> None:
        while True:
            write_counts()
            await asyncio.sleep(SAMPLE_S)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, write_counts)
    tasks = [
        asyncio.create_task(
            baseline_session(
                f"ws://127.0.0.1:{port}/v1/instances/{item['key']}/socket", item["key"], item["token"], counts, attempts
            )
        )
        for item in instances
    ]
    writer = asyncio.create_task(every_second())
    print(f"baseline client: {len(tasks)} instances on port {port}", flush=True)
    await stop.wait()
    for task in [*tasks, writer]:
        task.cancel()
    await asyncio.gather(*tasks, writer, return_exceptions=True)
    write_counts()
    print("baseline client counts: " + json.dumps(dict(sorted(counts.items()))), flush=True)


def read_counts(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def snapshot_counts(client: subprocess.Popen[bytes], path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """The baseline client's counts written after this call began (SIGUSR1 asks for them)."""
    seen = (read_counts(path) or {}).get("seq", 0)
    client.send_signal(signal.SIGUSR1)
    fresh: dict[str, Any] = {}

    def written() -> bool:
        data = read_counts(path)
        if data is None or data["seq"] <= seen:
            return False
        fresh.update(data)
        return True

    wait(written, timeout, interval=0.02, what=f"the baseline client's counts in {path}")
    return fresh


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
        "retries_refused_and_timed_out_connections": all(
            asyncio_client.process_exception(exc) is None for exc in (ConnectionRefusedError(), TimeoutError())
        ),
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
        "BLAST_OPEN_TIMEOUT_S",
        "BLAST_GATEWAY_DOWN_WINDOW_S",
        "BLAST_GATEWAY_DOWN_SHARE",
        "BLAST_GATEWAY_DOWN_MIN",
        "BLAST_GATEWAY_PROBE_MIN_S",
        "BLAST_GATEWAY_PROBE_MAX_S",
        "BLAST_GATEWAY_CONNECT_RATE",
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
    proc: subprocess.Popen[bytes] | None = None  # the simulator process (refused: the newest)
    client: subprocess.Popen[bytes] | None = None  # the baseline client process
    counts_file: Path | None = None  # the baseline client's attempt counts
    keys: list[str] = field(default_factory=list)
    gateway_id: int | None = None  # the Blast side's Gateway row
    fault_at: float = 0.0  # time.monotonic()
    fault_wall: float = 0.0  # time.time(), for the worker's event log
    cleared_at: float | None = None
    cleared_wall: float = 0.0
    away: bool = False  # refused: no simulator listening on the port
    starts: int = 1  # simulator processes started for this side
    before: dict[str, dict[str, int]] = field(default_factory=dict)
    after: dict[str, dict[str, int]] = field(default_factory=dict)
    client_before: dict[str, int] = field(default_factory=dict)
    client_window: dict[str, int] = field(default_factory=dict)  # the clients' own attempts in the window
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (s since fault, attempts, connects)
    client_timeline: list[tuple[float, int]] = field(default_factory=list)  # (s since fault, attempts since)
    client_seq: int = 0
    ready_since: tuple[float, dict[str, int]] | None = None
    recovered_s: float | None = None
    ready_at_end: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.scenario}/{self.name}"

    @property
    def counted_by(self) -> str:
        """Who counts the attempts in the window: nobody listens during ``refused``."""
        return "client" if self.scenario == "refused" else "simulator"

    def counters(self) -> dict[str, dict[str, int]]:
        """Per instance key: attempts, connects, refused, hung and current sessions, from the simulator."""
        instances = self.control.stats()["instances"]
        empty = {name: 0 for name in (*COUNTERS, "current")}
        return {
            key: {name: int(instances[key][name]) for name in empty} if key in instances else dict(empty)
            for key in self.keys
        }

    def sample_client(self) -> None:
        """The baseline client's latest counts, as attempts since the fault."""
        if self.counts_file is None:
            return
        data = read_counts(self.counts_file)
        if data is not None and data["seq"] > self.client_seq:
            self.client_seq = data["seq"]
            total = sum(data["attempts"].values()) - sum(self.client_before.values())
            self.client_timeline.append((data["at"] - self.fault_wall, total))


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


def peak_rate(rows: list[tuple[float, int]], start: float, end: float) -> float:
    """The highest rate between two consecutive samples of a counter, ``start <= t <= end``."""
    inside = [row for row in rows if start <= row[0] <= end]
    rates = [
        (n2 - n1) / (t2 - t1)
        for (t1, n1), (t2, n2) in itertools.pairwise(inside)
        if t2 - t1 >= SAMPLE_S / 2  # a short interval would make a noisy rate
    ]
    return round(max(rates, default=0.0), 1)


def summarize(side: Side) -> dict[str, Any]:
    assert side.cleared_at is not None
    window_s = side.cleared_at - side.fault_at
    figures: dict[str, Any] = {"instances": len(side.keys), "window_s": round(window_s, 1)}
    attempts_rows = [(t, a) for t, a, _ in side.timeline]
    upgrades_rows = [(t, c) for t, _, c in side.timeline]
    if side.counted_by == "simulator":
        deltas = {name: [side.after[key][name] - side.before[key][name] for key in side.keys] for name in COUNTERS}
        attempts = deltas["attempts"]
        totals: dict[str, Any] = {f"{name}_total": sum(deltas[name]) for name in ("connects", "refused", "hung")}
        peak_window = peak_rate(attempts_rows, 0.0, window_s)
    else:
        attempts = [side.client_window.get(key, 0) for key in side.keys]
        totals = {"connects_total": None, "refused_total": None, "hung_total": None}
        peak_window = peak_rate(side.client_timeline, 0.0, window_s)
    figures.update(
        {
            "attempts_counted_by": side.counted_by,
            "attempts_per_instance_mean": round(sum(attempts) / len(attempts), 2),
            "attempts_per_instance_max": max(attempts),
            "attempts_per_instance_min": min(attempts),
            "attempts_total": sum(attempts),
            "client_attempts_total": sum(side.client_window.get(key, 0) for key in side.keys),
            "upgrades_total": totals["connects_total"],
            "refused_total": totals["refused_total"],
            "hung_total": totals["hung_total"],
            "peak_attempts_per_s": peak_window,
            "peak_upgrades_per_s": peak_rate(upgrades_rows, 0.0, window_s) if side.counted_by == "simulator" else None,
            "peak_attempts_per_s_after": peak_rate(attempts_rows, window_s, float("inf")),
            "peak_upgrades_per_s_after": peak_rate(upgrades_rows, window_s, float("inf")),
            "recovery_s": None if side.recovered_s is None else round(side.recovered_s, 1),
            "ready_at_end": side.ready_at_end,
            **side.extra,
        }
    )
    return figures


def fmt_s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:g}s"


def print_table(results: dict[str, dict[str, dict[str, Any]]], recovery_timeout: float) -> None:
    header = (
        f"{'scenario':9s} {'side':10s} {'window':>7s} {'att/inst':>9s} {'max':>6s} {'total':>8s} {'by':>9s} "
        f"{'upgrades':>8s} {'peak att/s':>10s} {'after':>7s}  recovery"
    )
    print(header)
    print("-" * len(header))
    for scenario, sides in results.items():
        for name, r in sides.items():
            if r["recovery_s"] is not None:
                recovery = f"{r['recovery_s']:.1f} s"
            else:
                recovery = f"not all ready within {recovery_timeout:g} s ({r['ready_at_end']}/{r['instances']})"
            upgrades = "-" if r["upgrades_total"] is None else str(r["upgrades_total"])
            print(
                f"{scenario:9s} {name:10s} {r['window_s']:>6.0f}s {r['attempts_per_instance_mean']:>9.1f} "
                f"{r['attempts_per_instance_max']:>6d} {r['attempts_total']:>8d} {r['attempts_counted_by']:>9s} "
                f"{upgrades:>8s} {r['peak_attempts_per_s']:>10.1f} {r['peak_attempts_per_s_after']:>7.1f}  {recovery}"
            )


# --- the driver ----------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100, help="instances per side and scenario")
    parser.add_argument("--minutes", type=float, default=10.0, help="flapping window")
    parser.add_argument(
        "--outage-minutes", type=float, default=None, help="outage, refused and timeout window (default: --minutes)"
    )
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
    parser.add_argument("--counts-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.baseline_client:
        if args.port is None or args.keys_file is None or args.counts_file is None:
            parser.error("--baseline-client needs --port, --keys-file and --counts-file")
        asyncio.run(baseline_client(args.port, Path(args.keys_file), Path(args.counts_file)))
        return 0
    if args.instances < 1:
        parser.error("--instances must be >= 1")
    for output in (args.json, args.timeline):
        if output:  # fail now, not after the run
            Path(output).parent.mkdir(parents=True, exist_ok=True)
    outage_s = 60 * (args.outage_minutes if args.outage_minutes is not None else args.minutes)
    windows = {**{scenario: outage_s for scenario in OUTAGES}, "flapping": 60 * args.minutes}

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
    from django.db.models import Count, Max

    from instances import hints
    from instances.models import (
        BreakerState,
        CircuitBreaker,
        ConnectionEvent,
        EventKind,
        Gateway,
        GatewayEvent,
        Instance,
        Status,
        Tenant,
        WorkerHeartbeat,
    )
    from monitoring.alerts import CURSOR_KEY
    from monitoring.models import AlertState

    constants = websockets_constants()
    policy = blast_policy()
    facts = run_facts()
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

    def start_simulator(side: Side) -> None:
        side.proc = start(
            f"sim-{side.scenario}-{side.name}" + (f"-{side.starts}" if side.starts > 1 else ""),
            [python, "manage.py", "run_gateway_sim", "--port", str(side.port), "--start-paired"],
        )

    def set_fault(side: Side) -> None:
        if side.scenario == "outage":
            side.control.set_fault("refuse", status=503)
            side.control.restart()  # refusing upgrades alone leaves live sessions alone
        elif side.scenario == "timeout":
            side.control.set_fault("hang")
            side.control.restart()
        elif side.scenario == "refused":
            assert side.proc is not None
            side.away = True
            side.proc.kill()
            side.proc.wait(timeout=30)
        else:
            side.control.set_fault("close", code=1011)

    def end_window(side: Side, counters: dict[str, dict[str, int]]) -> None:
        """The fault is over: the gateway answers again from now on (``counters``: its simulator's now)."""
        if side.counts_file is not None and side.client is not None:
            counts = snapshot_counts(side.client, side.counts_file)["attempts"]
            side.client_window = {key: counts.get(key, 0) - side.client_before.get(key, 0) for key in side.keys}
        cleared_at, side.cleared_wall = time.monotonic(), time.time()
        side.cleared_at = cleared_at
        totals = [sum(c[name] for c in counters.values()) for name in ("attempts", "connects")]
        side.timeline.append((cleared_at - side.fault_at, totals[0], totals[1]))
        if side.gateway_id is not None:
            side.extra["breakers_at_window_end"] = breaker_states(side.gateway_id)
        print(f"{side.label}: fault cleared after {cleared_at - side.fault_at:.0f}s")

    def clear(side: Side) -> None:
        side.after = side.counters()
        end_window(side, side.after)
        side.control.clear_faults()

    def bring_back(returning: list[Side]) -> None:
        """Start a new simulator on each old port; the window ends when it answers.

        A client's own connection may hold the port for a moment (a TCP
        connection to a port nobody listens on can end up connected to
        itself): a process that could not listen is started again.
        """
        for side in returning:
            side.starts += 1
            start_simulator(side)
        deadline = time.monotonic() + BACK_TIMEOUT_S
        pending = list(returning)
        while pending:
            for side in list(pending):
                assert side.proc is not None
                try:
                    back = side.control.health().get("ok") is True
                except (OSError, SimulatorControlError, ValueError):
                    back = False
                if back:
                    side.away = False
                    end_window(side, side.counters())
                    pending.remove(side)
                elif side.proc.poll() is not None:
                    print(f"{side.label}: the new simulator exited with {side.proc.returncode}; starting another")
                    side.starts += 1
                    start_simulator(side)
            if pending and time.monotonic() > deadline:
                raise SystemExit(f"no simulator answered again within {BACK_TIMEOUT_S:g}s on the old ports")
            time.sleep(0.05)

    def blast_window(side: Side, key_of: dict[int, str]) -> None:
        """The worker's attempt events: per instance in the window, and per second since the fault."""
        assert side.gateway_id is not None
        rows = ConnectionEvent.objects.filter(
            instance__gateway_id=side.gateway_id, kind=EventKind.ATTEMPT, at__gte=utc(side.fault_wall)
        ).values_list("instance_id", "at", "message")
        window: Counter[str] = Counter()
        per_second: Counter[int] = Counter()
        probes = 0
        for instance_id, at, message in rows:
            ts = at.timestamp()
            if ts < side.cleared_wall:
                window[key_of[instance_id]] += 1
                probes += message == "gateway probe"
            per_second[int(ts - side.fault_wall)] += 1
        side.client_window = {key: window[key] for key in side.keys}
        side.extra["probes_in_window"] = probes
        total = 0
        side.client_timeline = [(0.0, 0)]
        for second in range(max(per_second, default=0) + 1):
            total += per_second[second]
            side.client_timeline.append((float(second + 1), total))

    def gateway_story(side: Side) -> dict[str, Any]:
        """Its transitions, as the worker recorded them (GatewayEvent rows)."""
        assert side.gateway_id is not None and side.cleared_at is not None
        events = list(GatewayEvent.objects.filter(gateway_id=side.gateway_id).order_by("at", "id"))
        downs = [e for e in events if e.kind == "down"]
        ups = [e for e in events if e.kind == "up"]
        back = [e for e in ups if e.at.timestamp() >= side.cleared_wall]
        return {
            "gateway_downs": len(downs),
            "gateway_ups": len(ups),
            "down_after_fault_s": round(downs[0].at.timestamp() - side.fault_wall, 1) if downs else None,
            "up_after_fault_s": round(ups[0].at.timestamp() - side.fault_wall, 1) if ups else None,
            "up_after_clear_s": round(back[0].at.timestamp() - side.cleared_wall, 1) if back else None,
            "down_total_s": round(sum(float(e.data.get("down_s", 0)) for e in ups), 1),
            "probes_while_down": sum(int(e.data.get("probes", 0)) for e in ups),
            "released_on_up": sum(int(e.data.get("released", 0)) for e in ups),
            "breakers_closed_on_up": sum(int(e.data.get("breakers_closed", 0)) for e in ups),
        }

    try:
        sides: list[Side] = []
        for scenario in SCENARIOS:
            for name in SIDES:
                port = free_port()
                side = Side(scenario, name, port, SimulatorControl(f"http://127.0.0.1:{port}", timeout=30))
                start_simulator(side)
                sides.append(side)
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
                side.counts_file = logs / f"counts-{side.scenario}.json"
                side.client = start(
                    f"baseline-{side.scenario}",
                    [
                        python,
                        str(Path(__file__).resolve()),
                        "--baseline-client",
                        "--port",
                        str(side.port),
                        "--keys-file",
                        str(keys_file),
                        "--counts-file",
                        str(side.counts_file),
                    ],
                )
        ids = list(Instance.objects.filter(tenant=tenant).values_list("id", flat=True))
        key_of = {i: str(k) for i, k in Instance.objects.filter(tenant=tenant).values_list("id", "key")}

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

        took = wait(everyone_ready, args.connect_timeout, what=f"every instance ready on all {len(sides)} simulators")
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
            if side.client is not None and side.counts_file is not None:
                counts = snapshot_counts(side.client, side.counts_file)
                side.client_before = {key: counts["attempts"].get(key, 0) for key in side.keys}
                side.client_seq = counts["seq"]
            totals = [sum(c[name] for c in side.before.values()) for name in ("attempts", "connects")]
            side.fault_at, side.fault_wall = time.monotonic(), time.time()
            set_fault(side)
            side.timeline.append((0.0, totals[0], totals[1]))
            side.client_timeline.append((0.0, 0))
        began = min(side.fault_at for side in sides)
        print(
            f"outage, refused and timeout for {outage_s:g}s and flapping for {windows['flapping']:g}s, "
            "both sides at once"
        )

        pending = list(sides)
        tick = began
        while pending:
            now = time.monotonic()
            due = [s for s in sides if s.cleared_at is None and now - s.fault_at >= windows[s.scenario]]
            for side in due:
                if side.scenario != "refused":
                    clear(side)
            returning = [side for side in due if side.scenario == "refused"]
            if returning:
                bring_back(returning)
            for side in list(pending):
                side.sample_client()
                if side.away:
                    continue  # nobody to ask
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

        # Breaker alerts are raised by the evaluator (a beat job) from the
        # event log: count them once it has read every event written so far.
        last_event = ConnectionEvent.objects.aggregate(last=Max("id"))["last"] or 0

        def evaluated() -> bool:
            data = AlertState.objects.filter(key=CURSOR_KEY).values_list("data", flat=True).first() or {}
            return int(data.get("last_id") or 0) >= last_event

        wait(evaluated, 180, interval=1.0, what="the alert evaluator to read every event")

        results: dict[str, dict[str, dict[str, Any]]] = {scenario: {} for scenario in SCENARIOS}
        for side in sides:
            if side.gateway_id is not None:
                blast_window(side, key_of)
                breakers = breaker_states(side.gateway_id)
                side.extra["breakers_at_end"] = breakers
                side.extra["breakers_open_at_end"] = sum(
                    breakers.get(state, 0) for state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
                )
                side.extra.update(gateway_story(side))
                side.extra["alerts"] = alerts_raised(side.gateway_id, side.fault_wall)
            side.extra["simulator_processes"] = side.starts
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
            r = results[side.scenario][side.name]
            if r["attempts_counted_by"] == "simulator":
                print(
                    f"{side.label}: attempts in the window: {r['attempts_total']} at the simulator, "
                    f"{r['client_attempts_total']} counted by the client (an upgrade still open at the end "
                    "of the window is counted by the client when it ends)"
                )
            if side.gateway_id is not None:
                alerts = ", ".join(f"{kind} {n}" for kind, n in r["alerts"].items())
                print(
                    f"{side.label}: gateway down {r['gateway_downs']}x (first {r['down_after_fault_s']}s after the "
                    f"fault), up {r['gateway_ups']}x ({fmt_s(r['up_after_clear_s'])} after the fault ended), down "
                    f"{r['down_total_s']}s in all, {r['probes_in_window']} probes; alerts: {alerts}; breakers at "
                    f"window end {r['breakers_at_window_end']}, at the end {r['breakers_at_end']}"
                )
        if args.json:
            figures = {
                "command": command_line(),
                **facts,
                "parameters": {
                    "instances_per_side": args.instances,
                    "outage_s": outage_s,
                    "flapping_s": windows["flapping"],
                    "recovery_timeout_s": args.recovery_timeout,
                    "settle_s": settle,
                    "faults": FAULTS,
                    "sample_s": SAMPLE_S,
                    "database": database_url.split(":", 1)[0],
                    "dropped_environment": dropped,
                    "cores": os.cpu_count(),
                },
                "websockets": constants,
                "blast_policy": policy,
                "results": results,
            }
            Path(args.json).write_text(json.dumps(figures, indent=2))
        if args.timeline:
            rows = ["scenario,side,source,seconds_since_fault,attempts,upgrades\n"]
            for side in sides:
                assert side.cleared_at is not None
                back_at = side.cleared_at - side.fault_at
                for t, attempts, connects in side.timeline:
                    source = "new simulator" if side.scenario == "refused" and t >= back_at else "simulator"
                    rows.append(f"{side.scenario},{side.name},{source},{t:.1f},{attempts},{connects}\n")
                for t, attempts in side.client_timeline:
                    rows.append(f"{side.scenario},{side.name},client,{t:.1f},{attempts},\n")
            Path(args.timeline).write_text("".join(rows))
        return 0
    finally:
        group.stop()


if __name__ == "__main__":
    raise SystemExit(main())
