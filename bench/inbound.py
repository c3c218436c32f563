"""Inbound throughput: gateway frames through the worker into the database and out as webhooks.

    .venv/bin/python bench/inbound.py [--rate 1000] [--seconds 30] [--instances 50] [--workers 1]
        [--webhook-period S] [--preload] [--drain-timeout 600] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
        [--json bench/results/inbound.json]

Issue 16 asks for 1,000 inbound messages a second through the worker into the
database and out as webhooks, and for the lag (p95). Starts, each as its own
process: the gateway simulator (paired at once, no receipts), connection
worker(s), and Celery with beat, whose jobs include the webhook fan-out
(``campaigns.fan_out_webhooks``, every ``BLAST_WEBHOOK_PERIOD_S`` as the
platform ships it, unless ``--webhook-period``). No web process: nothing here
goes through the API. Creates a fresh PostgreSQL database (named after the
run, dropped at the end), a tenant with N instances and one tenant webhook
subscribed to inbound messages only, pointed at a receiver in this process on
127.0.0.1 (``BLAST_WEBHOOK_ALLOW_PRIVATE=1`` lets the platform post to
loopback); the receiver checks every POST's signature.

Once every instance is connected, one message per instance goes through the
whole path as a warm-up; then one inbound burst (``POST
/_control/inbound-burst``, docs/SIMULATOR.md): rate x seconds frames, round
robin over the instances, paced by the simulator, each text stamped with the
time its frame was written. When every message is stored and delivered (or
after ``--drain-timeout``), prints:

- sent per second: frames the simulator wrote, from the first to the last;
- stored per second: ``InboundMessage`` rows over the time from the first
  frame sent to the last row stored; webhook events per second likewise, to
  the last event received (which includes the wait for the last fan-out, up
  to one ``BLAST_WEBHOOK_PERIOD_S``);
- how many rows were still missing when the last frame went out, how long
  after it the last row was stored, and how long after the last row the last
  webhook event arrived (whether the webhooks keep up with the database);
- lag from frame sent to row stored (``received_at``) and to webhook
  received: p50, p95, p99, max;
- losses: sent against stored against delivered, duplicates, bad signatures;
- where the time goes: each process's CPU over the burst (100 % is one
  core), database transactions and rows written per message, and the queries
  and milliseconds of one ``handle_inbound`` call measured in this process
  before the worker starts (the worker's own work per message, serial);
- rows stored and webhook events second by second.

With ``--preload`` no frame is sent during the measurement: this process
stores the rows itself at the same pace (``bulk_create`` every 10 ms), so
that the webhook side (fan-out, delivery) is measured without the worker in
front of it.

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hmac
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    command_line,
    create_database,
    create_instances,
    drop_database,
    run_facts,
    setup_django,
    start_simulator,
    wait,
)
from simulator.bursts import parse_stamp  # noqa: E402

WARMUP = "warmup"
BENCH = "bench"
# The in-process probe: enough calls for a stable mean, few enough to be quick.
PROBE_CALLS = 200


# -- figures from timestamps (pure) ------------------------------------------------------


def percentile_ms(ordered: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of sorted seconds, in ms."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * p // 100))
    return round(ordered[int(rank) - 1] * 1000, 1)


def lag_figures(prefix: str, lags: Iterable[float]) -> dict[str, float | None]:
    """``<prefix>_lag_p50_ms`` ... ``_max_ms`` of ``lags`` (seconds)."""
    ordered = sorted(lags)
    figures = {f"{prefix}_lag_p{p}_ms": percentile_ms(ordered, p) for p in (50, 95, 99)}
    figures[f"{prefix}_lag_max_ms"] = round(ordered[-1] * 1000, 1) if ordered else None
    return figures


def rate_from(first_sent: float, arrivals: Iterable[float]) -> float | None:
    """Arrivals per second from ``first_sent`` (the first frame) to the last arrival.

    Measured from the first frame rather than the first arrival: a stage
    that works in batches (the webhook fan-out) delivers its first batch
    late and all at once, and a span starting there would be too short.
    """
    last = max(arrivals, default=None)
    if last is None or last <= first_sent:
        return None
    return round(len(list(arrivals)) / (last - first_sent), 1)


def each_second(times: Iterable[float], origin: float) -> dict[str, int]:
    """How many of ``times`` fell in each whole second after ``origin``."""
    counts = collections.Counter(int(t - origin) for t in times)
    return {str(second): counts[second] for second in sorted(counts)}


# -- the webhook receiver ----------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: records each inbound event's first arrival."""

    secret: str = ""
    first_seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # event id -> (text, at)
    # event id -> arrivals after the first (delivery is at least once)
    repeats: collections.Counter[str] = field(default_factory=collections.Counter)
    deliveries: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Serve in a thread; the URL to subscribe."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/inbound"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def receive(self, headers: Any, body: bytes, at: float) -> None:
        """Record one POST (signature checked against ``secret``)."""
        from monitoring import signing

        expected = signing.signature(self.secret, int(headers.get(signing.TIMESTAMP_HEADER, "0") or 0), body)
        signed = hmac.compare_digest(expected, headers.get(signing.SIGNATURE_HEADER, ""))
        events = json.loads(body).get("events", [])
        with self.lock:
            self.deliveries += 1
            self.bad_signatures += 0 if signed else 1
            for event in events:
                if event.get("type") != "message.inbound":
                    continue
                if event["id"] in self.first_seen:
                    self.repeats[event["id"]] += 1
                else:
                    self.first_seen[event["id"]] = (event["inbound"]["text"], at)

    def arrivals(self, prefix: str) -> dict[str, tuple[str, float]]:
        """The events whose text starts with ``prefix``, by id: (text, first arrival)."""
        with self.lock:
            return {k: v for k, v in self.first_seen.items() if v[0].startswith(prefix + " ")}

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for text, _ in self.first_seen.values() if text.startswith(prefix + " "))


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            at = time.time()
            try:
                receiver.receive(self.headers, body, at)
                status = 200
            except (ValueError, KeyError, TypeError, AttributeError):
                status = 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line a POST would drown the output

    return Handler


# -- what the processes spend ------------------------------------------------------------------


def cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """User plus system CPU seconds of each process so far (gone: left out)."""
    spent = {}
    for name, proc in procs.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        spent[name] = times.user + times.system
    return spent


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of the local PostgreSQL server so far, every database's
    backends included, those that have ended too (their parent's children
    times); None when no server runs on this machine."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "postgres":
            continue
        try:
            parent = proc.parent()
            if parent is not None and parent.name() == "postgres":
                continue
            live = sum(_cpu(child) for child in proc.children())
            times = proc.cpu_times()
            return float(live + times.user + times.system + times.children_user + times.children_system)
        except psutil.Error:
            continue
    return None


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core."""
    times = psutil.cpu_times()._asdict()
    # Guest time is counted in user time already.
    total = sum(value for name, value in times.items() if not name.startswith("guest"))
    return total - times["idle"] - times.get("iowait", 0.0), total


@dataclass
class CpuSample:
    """What every watched process, the database server and the machine had spent at one moment."""

    at: float
    processes: dict[str, float]
    postgres: float | None
    machine: tuple[float, float]

    @classmethod
    def take(cls, procs: dict[str, psutil.Process]) -> CpuSample:
        return cls(time.monotonic(), cpu_seconds(procs), postgres_cpu_seconds(), machine_busy())


def cpu_figures(before: CpuSample, after: CpuSample, workers: int) -> dict[str, float | None]:
    """CPU between two samples, 100 % being one core (the machine's: all cores)."""
    seconds = max(1e-6, after.at - before.at)

    def percent(name: str) -> float | None:
        if name not in before.processes or name not in after.processes:
            return None
        return round(100 * (after.processes[name] - before.processes[name]) / seconds, 1)

    figures = {f"worker_cpu_percent{'' if workers == 1 else f'_{n}'}": percent(f"worker-{n}") for n in range(workers)}
    figures["celery_cpu_percent"] = percent("celery")
    figures["simulator_cpu_percent"] = percent("simulator")
    figures["bench_process_cpu_percent"] = percent("bench")
    if before.postgres is not None and after.postgres is not None:
        figures["postgresql_cpu_percent"] = round(100 * (after.postgres - before.postgres) / seconds, 1)
    busy = after.machine[0] - before.machine[0]
    figures["machine_busy_percent"] = round(100 * busy / max(1e-6, after.machine[1] - before.machine[1]), 1)
    return figures


def db_counters() -> tuple[int, int]:
    """Transactions committed and rows written in this run's database so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        commits, rows = cursor.fetchone()
    return int(commits), int(rows)


# -- the platform's own work per message ----------------------------------------------------


def probe_inbound(tenant: Any, gateway: Any) -> dict[str, float]:
    """Queries and mean milliseconds of one ``handle_inbound`` call, serial, in this process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from campaigns.inbound import handle_inbound
    from campaigns.models import InboundMessage
    from instances.models import Instance
    from simulator.bursts import sender_of

    probe = Instance.objects.create(tenant=tenant, name="probe", gateway=gateway)
    with CaptureQueriesContext(connection) as captured:
        handle_inbound(probe.pk, "probe-0", sender_of(0), "probe")
    started = time.perf_counter()
    for n in range(1, PROBE_CALLS + 1):
        handle_inbound(probe.pk, f"probe-{n}", sender_of(n), "probe")
    mean_ms = (time.perf_counter() - started) * 1000 / PROBE_CALLS
    InboundMessage.objects.filter(instance=probe).delete()
    probe.delete()
    return {"queries_per_inbound": len(captured.captured_queries), "inbound_handling_ms": round(mean_ms, 2)}


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Stage:
    """When each message of the burst reached one stage, by its number in the burst."""

    sent: dict[int, float]  # n -> when its frame was written
    reached: dict[int, float]  # n -> when it got here
    repeats: int = 0  # arrivals of a message already seen

    def lags(self) -> list[float]:
        return [self.reached[n] - self.sent[n] for n in self.reached if n in self.sent]


def stored_stage(tenant: Any, prefix: str) -> Stage:
    """The burst's rows: when each was sent (its text) and stored (``received_at``)."""
    from campaigns.models import InboundMessage

    sent: dict[int, float] = {}
    reached: dict[int, float] = {}
    repeats = 0
    rows = InboundMessage.objects.filter(tenant=tenant, text__startswith=prefix + " ").values_list(
        "text", "received_at"
    )
    for text, received_at in rows.iterator(chunk_size=5000):
        stamp = parse_stamp(text)
        if stamp is None:
            continue
        _, n, at = stamp
        if n in reached:
            repeats += 1
            continue
        sent[n], reached[n] = at, received_at.timestamp()
    return Stage(sent, reached, repeats)


def webhook_stage(receiver: Receiver, prefix: str) -> Stage:
    """The burst's webhook events: when each was sent (its text) and first received."""
    sent: dict[int, float] = {}
    reached: dict[int, float] = {}
    arrivals = receiver.arrivals(prefix)
    for text, at in arrivals.values():
        stamp = parse_stamp(text)
        if stamp is not None:
            sent[stamp[1]], reached[stamp[1]] = stamp[2], at
    with receiver.lock:
        repeats = sum(receiver.repeats[event_id] for event_id in arrivals)
    return Stage(sent, reached, repeats)


def stored_count(tenant: Any) -> int:
    """The tenant's inbound rows (by the tenant's index: no text is read)."""
    from campaigns.models import InboundMessage

    return int(InboundMessage.objects.filter(tenant=tenant).count())


@dataclass
class Drained:
    """How a burst ended: its last status, the rows missing when its last
    frame went out, and the CPU spent while it was sending."""

    status: dict[str, Any]
    behind_when_sent: int
    cpu_when_sent: CpuSample | None
    complete: bool = True  # False: the wait ran out first


class Preload:
    """Rows stored straight into the database at the burst's pace, from a
    thread of this process: the webhook side measured without the gateway
    and the worker. Its :meth:`status` reads like the simulator's burst."""

    def __init__(self, tenant: Any, instance_ids: list[int], count: int, rate: float) -> None:
        self.tenant, self.instance_ids, self.count, self.rate = tenant, instance_ids, count, rate
        self.sent = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> dict[str, Any]:
        self.thread.start()
        return {"burst": 0, "count": self.count, "rate": self.rate}

    def status(self) -> dict[str, Any]:
        done = self.finished_at is not None
        return {
            "sent": self.sent,
            "skipped": 0,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "done": done,
        }

    def _run(self) -> None:
        from django.db import connection

        from simulator.bursts import due

        start = time.monotonic()
        self.started_at = time.time()
        try:
            while self.sent < self.count:
                target = due(time.monotonic() - start, self.rate, self.count)
                if target > self.sent:
                    self._store(self.sent, target)
                    self.sent = target
                time.sleep(0.01)
        finally:
            self.finished_at = time.time()
            connection.close()

    def _store(self, first: int, end: int) -> None:
        from django.utils import timezone

        from campaigns.models import InboundMessage
        from simulator.bursts import sender_of, stamped_text

        at = time.time()
        now = timezone.now()
        ids = self.instance_ids
        InboundMessage.objects.bulk_create(
            InboundMessage(
                tenant=self.tenant,
                instance_id=ids[n % len(ids)],
                server_id=f"preload-{n}",
                sender=sender_of(n),
                text=stamped_text(BENCH, 0, n, at),
                received_at=now,
            )
            for n in range(first, end)
        )


def drain(
    progress: Callable[[], dict[str, Any]],
    burst: dict[str, Any],
    tenant: Any,
    before: int,
    receiver: Receiver,
    procs: dict[str, psutil.Process],
    timeout: float,
) -> Drained:
    """Wait until the burst is sent, stored and delivered, at most ``timeout`` s
    after its last frame was due; the tenant had ``before`` rows when it began.
    ``progress`` is the burst's status as the simulator answers it."""
    deadline = time.monotonic() + (burst["count"] - 1) / burst["rate"] + timeout
    ended: Drained | None = None
    while True:
        status = progress()
        if status["done"] and ended is None:
            ended = Drained(status, 0, CpuSample.take(procs))
            ended.behind_when_sent = status["sent"] - (stored_count(tenant) - before)
        stored = stored_count(tenant) - before
        if ended is not None and stored >= status["sent"] and receiver.count(BENCH) >= stored:
            ended.status = status
            return ended
        if time.monotonic() > deadline:
            print(f"gave up waiting: {status['sent']} sent, {stored} stored, {receiver.count(BENCH)} delivered")
            ended = ended or Drained(status, status["sent"] - stored, None)
            ended.status, ended.complete = status, False
            return ended
        time.sleep(0.5)


def settled(tenant: Any, total: int, quiet_s: float = 3.0) -> bool:
    """Every instance connected, and none changed owner for ``quiet_s``."""
    from instances.models import Instance, Status

    def owners() -> list[tuple[int, str | None]]:
        rows = Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).order_by("id")
        return list(rows.values_list("id", "owner"))

    first = owners()
    if len(first) < total:
        return False
    time.sleep(quiet_s)
    return owners() == first


def warm_up(control: Any, keys: list[str], tenant: Any, receiver: Receiver, timeout: float) -> None:
    """One message per instance through the whole path, so that first-use costs stay out of the figures."""
    control.inbound_burst(len(keys), max(10.0, len(keys) / 2), instances=keys, text=WARMUP)
    wait(
        lambda: stored_count(tenant) >= len(keys) and receiver.count(WARMUP) >= len(keys),
        timeout,
        what="the warm-up stored and delivered",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="inbound messages offered per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the burst lasts")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="connection workers")
    parser.add_argument(
        "--webhook-period",
        type=float,
        default=None,
        help="seconds between webhook fan-outs (BLAST_WEBHOOK_PERIOD_S; default: the platform's)",
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait after the last frame")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="store the rows directly at the rate (no gateway frames, no worker): the webhook side alone",
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    facts = run_facts()
    load_at_start = os.getloadavg()[0]
    tag = uuid.uuid4().hex[:8]
    admin_url = args.database_url
    dbname = f"blast_bench_{tag}"
    database_url = create_database(admin_url, dbname)
    logs = ROOT / ".run" / f"bench-inbound-{tag}"
    extra = {"BLAST_WEBHOOK_ALLOW_PRIVATE": "1"}
    if args.webhook_period is not None:
        extra["BLAST_WEBHOOK_PERIOD_S"] = str(args.webhook_period)
    env = bench_env(tag, database_url, **extra)
    python = sys.executable
    group = Processes(env, logs)
    receiver = Receiver()

    try:
        setup_django(env)
        from django.conf import settings

        from campaigns.models import TenantWebhook
        from instances import hints
        from instances.models import Instance, WorkerHeartbeat

        simulator = start_simulator(group, "--receipt-delay", "-1")
        control = simulator.control
        tenant, gateway = bench_tenant(tag, simulator)
        ids = create_instances(tenant, gateway, args.instances)
        keys = [str(key) for key in Instance.objects.filter(id__in=ids).order_by("id").values_list("key", flat=True)]
        probe = probe_inbound(tenant, gateway)

        webhook = TenantWebhook(
            tenant=tenant,
            name="bench",
            url=receiver.start(),
            message_events=False,
            instance_events=False,
            inbound_events=True,
        )
        receiver.secret = webhook.set_secret()
        webhook.save()

        procs = {"simulator": psutil.Process(simulator.process.pid)}
        for n in range(args.workers):
            worker = group.start(
                f"worker-{n}", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}-{n}"]
            )
            procs[f"worker-{n}"] = psutil.Process(worker.pid)
        procs["celery"] = psutil.Process(group.start("celery", celery_argv(env, logs)).pid)
        procs["bench"] = psutil.Process(os.getpid())
        # Every worker known before the instances connect: none moves to a late joiner mid-burst.
        worker_ids = [f"bench-{tag}-{n}" for n in range(args.workers)]
        wait(
            lambda: WorkerHeartbeat.objects.filter(worker_id__in=worker_ids).count() == len(worker_ids),
            60,
            what="every worker's heartbeat",
        )
        hints.send(ids)
        connected_in = wait(lambda: settled(tenant, len(ids)), 300, what="all instances connected, owners settled")
        print(f"{len(ids)} instances connected in {connected_in:.1f}s")
        period = float(settings.BLAST_WEBHOOK_PERIOD_S)
        warm_up(control, keys, tenant, receiver, 60 + 3 * period)
        print("warm-up stored and delivered")

        count = max(1, round(args.rate * args.seconds))
        rows_before, db_before = stored_count(tenant), db_counters()
        cpu_before = CpuSample.take(procs)
        if args.preload:
            preload = Preload(tenant, ids, count, args.rate)
            burst, progress = preload.start(), preload.status
            print(f"storing {count} rows directly at {args.rate:g}/s over {len(keys)} instances")
        else:
            burst = control.inbound_burst(count, args.rate, instances=keys, text=BENCH)
            progress = functools.partial(control.burst, burst["burst"])
            print(f"burst {burst['burst']}: {count} messages at {args.rate:g}/s over {len(keys)} instances")
        drained = drain(progress, burst, tenant, rows_before, receiver, procs, args.drain_timeout)
        db_after, status = db_counters(), drained.status
        stored, delivered = stored_stage(tenant, BENCH), webhook_stage(receiver, BENCH)
        # CPU while the frames went out: what each process needs to keep up.
        cpu = cpu_figures(cpu_before, drained.cpu_when_sent, args.workers) if drained.cpu_when_sent else {}
        figures = {
            "command": command_line(),
            **facts,
            "mode": "rows stored directly (webhook side only)" if args.preload else "gateway frames through the worker",
            "instances": len(ids),
            "workers": args.workers,
            "target_rate_per_s": args.rate,
            "seconds": args.seconds,
            "webhook_period_s": period,
            "webhook_batch": int(settings.BLAST_WEBHOOK_BATCH),
            **measured(status, stored, delivered, receiver, drained.behind_when_sent, drained.complete),
            **cpu,
            "transactions_per_message": round((db_after[0] - db_before[0]) / max(status["sent"], 1), 2),
            "rows_written_per_message": round((db_after[1] - db_before[1]) / max(status["sent"], 1), 2),
            **probe,
            "cores": os.cpu_count(),
            "load_average_at_start": round(load_at_start, 2),
            "stored_each_second": each_second(stored.reached.values(), float(status["started_at"])),
            "webhook_events_each_second": each_second(delivered.reached.values(), float(status["started_at"])),
        }
        for name, value in figures.items():
            print(f"{name:36s} {value}")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        complete = figures["lost_before_database"] == 0 and figures["lost_before_webhook"] == 0
        return 0 if complete and not figures["bad_signatures"] else 1
    finally:
        receiver.stop()
        group.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        drop_database(admin_url, dbname)


def measured(
    status: dict[str, Any], stored: Stage, delivered: Stage, receiver: Receiver, behind_at_end: int, complete: bool
) -> dict[str, Any]:
    """The throughput, lag and loss figures of one burst."""
    sent = int(status["sent"])
    sent_times = [*stored.sent.values(), *delivered.sent.values()]
    first_sent = min(sent_times, default=float(status["started_at"]))
    last_sent = max(sent_times, default=float(status["finished_at"]))
    last_row = max(stored.reached.values(), default=None)
    last_webhook = max(delivered.reached.values(), default=None)
    with receiver.lock:
        deliveries, bad = receiver.deliveries, receiver.bad_signatures
    return {
        "sent": sent,
        "skipped": int(status["skipped"]),
        "sent_per_s": round((sent - 1) / max(1e-6, float(status["finished_at"]) - float(status["started_at"])), 1),
        "stored": len(stored.reached),
        "stored_per_s": rate_from(first_sent, list(stored.reached.values())),
        "stored_behind_when_sending_ended": behind_at_end,
        "stored_done_after_s": _after(last_row, last_sent),
        **lag_figures("stored", stored.lags()),
        "webhook_events": len(delivered.reached),
        "webhook_deliveries": deliveries,
        "webhook_events_per_s": rate_from(first_sent, list(delivered.reached.values())),
        **lag_figures("webhook", delivered.lags()),
        "webhooks_behind_database_s": _after(last_webhook, last_row),
        "drained_after_s": _after(last_webhook, last_sent),
        # Not drained: the "lost" figures below count what had not arrived when the wait ran out.
        "drained": complete,
        "lost_before_database": sent - len(stored.reached),
        "lost_before_webhook": len(stored.reached) - len(delivered.reached),
        "duplicate_rows": stored.repeats,
        "duplicate_webhook_events": delivered.repeats,
        "bad_signatures": bad,
    }


def _after(later: float | None, earlier: float | None) -> float | None:
    """Seconds from ``earlier`` to ``later``, one decimal; None when either is missing."""
    return None if later is None or earlier is None else round(later - earlier, 1)


if __name__ == "__main__":
    raise SystemExit(main())
