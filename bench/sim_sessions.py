"""How many concurrent sessions one gateway simulator holds, and at what cost.

    .venv/bin/python bench/sim_sessions.py --sessions 2000 [--hold 5] [--concurrency 0]
    .venv/bin/python bench/sim_sessions.py --sessions 500 --url ws://127.0.0.1:8765 [--sim-pid PID]

Starts ``manage.py run_gateway_sim --start-paired`` on a free port (or uses
the simulator at ``--url``, pairing each instance through the control API
first), opens N sessions from this one process with real ``websockets``
clients (compression off, as the platform's worker does), waits until every
one has received ``ready``, holds them ``--hold`` seconds, and prints:
sessions requested, ready, errors, time until all were ready, the
simulator's RSS (before and while holding) and a summary of its stats.
Exit status 0 only if every session got ready.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from simulator.control import SimulatorControl  # noqa: E402
from simulator.protocol import SUBPROTOCOL  # noqa: E402
from simulator.server import free_port, raise_nofile_limit  # noqa: E402


@contextlib.contextmanager
def simulator_process(flags: list[str]) -> Iterator[tuple[str, int]]:
    """Run a simulator subprocess; yield (ws url, pid); stop it with SIGTERM afterwards."""
    port = free_port()
    python = REPO_ROOT / ".venv" / "bin" / "python"
    command = [
        str(python if python.exists() else sys.executable),
        "manage.py",
        "run_gateway_sim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *flags,
    ]
    with tempfile.NamedTemporaryFile(prefix="sim-bench-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        SimulatorControl(f"http://127.0.0.1:{port}").wait_healthy(timeout=60)
        yield f"ws://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        text = Path(log.name).read_text(errors="replace")
        if "Traceback" in text:
            print(f"WARNING: the simulator logged a traceback; log kept at {log.name}", file=sys.stderr)
        else:
            os.unlink(log.name)


async def open_session(url: str, key: str, open_timeout: float) -> ClientConnection:
    """Connect as instance ``key`` and read frames until ``ready``."""
    ws = await connect(
        f"{url}/v1/instances/{key}/socket",
        additional_headers={"Authorization": f"Bearer bench-{key}"},
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        compression=None,
        open_timeout=open_timeout,
        close_timeout=5,
    )
    try:
        async with asyncio.timeout(open_timeout):
            while json.loads(await ws.recv()).get("type") != "ready":
                pass
    except BaseException:
        await ws.close()
        raise
    return ws


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return None


def summarize_stats(stats: dict[str, Any]) -> dict[str, Any]:
    instances = stats.get("instances", {}).values()
    return {
        "sessions": stats.get("sessions"),
        "max_sessions": stats.get("max_sessions"),
        "instances": len(stats.get("instances", {})),
        "connects": sum(i["connects"] for i in instances),
        "refused": sum(i["refused"] for i in instances),
        "max_concurrent_per_instance": max((i["max_concurrent"] for i in instances), default=0),
        "malformed_received": stats.get("malformed_received"),
    }


async def run(args: argparse.Namespace, url: str, sim_pid: int | None) -> dict[str, Any]:
    control = SimulatorControl(url)
    keys = [str(uuid.uuid4()) for _ in range(args.sessions)]
    if args.url:
        for key in keys:
            control.pair(key)
    rss_before = rss_mib(sim_pid)
    limit = asyncio.Semaphore(args.concurrency) if args.concurrency > 0 else None
    errors: collections.Counter[str] = collections.Counter()
    clients: list[ClientConnection] = []

    async def one(key: str) -> None:
        try:
            if limit is None:
                clients.append(await open_session(url, key, args.open_timeout))
            else:
                async with limit:
                    clients.append(await open_session(url, key, args.open_timeout))
        except Exception as exc:
            errors[type(exc).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(key) for key in keys))
    all_ready_s = time.perf_counter() - started
    await asyncio.sleep(args.hold)  # hold them all open
    stats = await asyncio.to_thread(control.stats)
    still_open = sum(1 for ws in clients if ws.close_code is None)
    rss_holding = rss_mib(sim_pid)
    client_rss = rss_mib(os.getpid())
    close_started = time.perf_counter()
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    close_s = time.perf_counter() - close_started
    per_session_kib = None
    if rss_before is not None and rss_holding is not None and clients:
        per_session_kib = (rss_holding - rss_before) * 1024 / len(clients)
    return {
        "sessions_requested": args.sessions,
        "ready": len(clients),
        "errors": dict(errors),
        "still_open_after_hold": still_open,
        "time_to_all_ready_s": round(all_ready_s, 3),
        "hold_s": args.hold,
        "close_all_s": round(close_s, 3),
        "simulator_rss_before_mib": None if rss_before is None else round(rss_before, 1),
        "simulator_rss_holding_mib": None if rss_holding is None else round(rss_holding, 1),
        "simulator_kib_per_session": None if per_session_kib is None else round(per_session_kib, 1),
        "client_rss_mib": None if client_rss is None else round(client_rss, 1),
        "simulator_stats": summarize_stats(stats) if not args.full_stats else stats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000, help="concurrent sessions to open")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them all open")
    parser.add_argument("--concurrency", type=int, default=0, help="max handshakes in flight (0: all at once)")
    parser.add_argument("--open-timeout", type=float, default=60.0, help="per-session deadline for ready")
    parser.add_argument("--url", help="use this running simulator (ws://host:port) instead of starting one")
    parser.add_argument("--sim-pid", type=int, help="pid of the simulator at --url, for its RSS")
    parser.add_argument("--full-stats", action="store_true", help="print the simulator's whole stats")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")

    soft, _hard = raise_nofile_limit()
    if soft < args.sessions + 100:
        print(f"WARNING: open file limit {soft} is too low for {args.sessions} sessions", file=sys.stderr)

    if args.url:
        result = asyncio.run(run(args, args.url.rstrip("/"), args.sim_pid))
    else:
        with simulator_process(["--start-paired", "--receipt-delay", "-1"]) as (url, pid):
            result = asyncio.run(run(args, url, pid))
    result["open_file_limit"] = soft
    result["cpus"] = os.cpu_count()

    width = max(len(k) for k in result)
    for name, value in result.items():
        if name != "simulator_stats":
            print(f"{name:<{width}}  {value}")
    print("simulator_stats " + json.dumps(result["simulator_stats"], indent=None if not args.full_stats else 2))
    return 0 if result["ready"] == args.sessions else 1


if __name__ == "__main__":
    raise SystemExit(main())
