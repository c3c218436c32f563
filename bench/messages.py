"""End-to-end message throughput: the API accepts, the worker sends, the gateway acks.

    .venv/bin/python bench/messages.py --messages 20000 --instances 1000 [--web 2] [--workers 1]
        [--batch 500] [--media] [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--json out.json]

Starts, each as its own process: the gateway simulator (paired at once, no
receipts unless ``--receipts``), connection worker(s), Celery with beat, and the web process(es)
(``python -m blast.web``, daphne). Creates a fresh PostgreSQL database (named
after the run, dropped at the end), a tenant, an API key and N instances
with pacing off (no delay, no caps), waits until all are connected, then
POSTs the messages to ``/api/v1/instances/<id>/messages`` from a pool of
client threads spread over the instances (with ``--batch N``: POSTs batches
of N messages to ``/api/v1/messages/batch`` instead, counting the messages
each answer holds), and waits until every message is acked (status
``sent``). Prints:

- acceptance: messages per second answered 202 by the API;
- delivery: messages per second from the first acceptance to the last ack;
- end to end: messages over the time from the first POST to the last ack;
- database work per message: transactions committed and rows written per
  message (PostgreSQL's own counters for the run's database), and the exact
  number of queries one API acceptance makes (measured in-process; with
  ``--batch``, also the queries of one batch of N);
- with ``--media``: then as many messages again through the same
  processes, each carrying one 200 KiB image uploaded once
  (``POST /api/v1/media``), sent as protocol v1.1 media sends whose signed
  link the simulator fetches before it acks: the same figures prefixed
  ``media_``, and the platform's bytes served per message (what the link
  endpoint streamed, over the messages) beside the file's size.

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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
    free_port,
    run_facts,
    setup_django,
    start_simulator,
    wait,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--web", type=int, default=2, help="web processes (daphne)")
    parser.add_argument("--workers", type=int, default=1, help="connection workers")
    parser.add_argument("--clients", type=int, default=32, help="client threads posting messages")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="messages per POST to /api/v1/messages/batch (0: one message per POST to the single endpoint)",
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="store the messages directly (no API) and measure the sending side alone",
    )
    parser.add_argument(
        "--receipts",
        action="store_true",
        help="the simulator also sends delivered and read receipts for every message (the worker records them)",
    )
    parser.add_argument(
        "--media",
        action="store_true",
        help="then send as many messages again, each with a 200 KiB image (a protocol v1.1 media send whose "
        "link the simulator fetches), and print both phases side by side",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.media and args.preload:
        parser.error("--media goes through the API; leave out --preload")

    facts = run_facts()
    tag = uuid.uuid4().hex[:8]
    admin_url = args.database_url
    dbname = f"blast_bench_{tag}"
    database_url = create_database(admin_url, dbname)

    logs = ROOT / ".run" / f"bench-messages-{tag}"
    web_ports = [free_port() for _ in range(args.web)]
    env = bench_env(
        tag,
        database_url,
        BLAST_SEND_DELAY_MIN_S="0",
        BLAST_SEND_DELAY_MAX_S="0",
        BLAST_HOURLY_CAP="0",
        BLAST_DAILY_CAP="0",
        # Gateways fetch media links from the first web process.
        BLAST_PUBLIC_URL=f"http://127.0.0.1:{web_ports[0]}",
        BLAST_MEDIA_ROOT=str(logs / "media"),
    )
    python = sys.executable
    group = Processes(env, logs)
    start = group.start

    try:
        setup_django(env)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from api.models import ApiKey
        from campaigns.messages import NewMessage, accept, accept_many
        from campaigns.models import Message, MessageStatus
        from instances import hints
        from instances.models import Instance, Status

        simulator = start_simulator(group, "--receipt-delay", "0" if args.receipts else "-1")
        tenant, gateway = bench_tenant(tag, simulator)
        create_instances(tenant, gateway, args.instances)
        instances = list(Instance.objects.filter(tenant=tenant).values_list("id", "key"))
        _, api_key = ApiKey.objects.create_key(tenant, "bench")

        # The exact cost of one acceptance, measured in this process.
        probe = Instance.objects.create(tenant=tenant, name="probe", gateway=gateway)
        with CaptureQueriesContext(connection) as captured:
            accept(tenant, probe, "+12015550100", "probe")
        queries_per_acceptance = len(captured.captured_queries)
        queries_per_batch = None
        if args.batch:
            probes = [NewMessage(probe, f"+1201555{n % 10000:04d}", "probe") for n in range(args.batch)]
            with CaptureQueriesContext(connection) as captured:
                accept_many(tenant, probes)
            queries_per_batch = len(captured.captured_queries)
        Message.objects.filter(instance=probe).delete()
        probe.delete()

        for n in range(args.workers):
            start(f"worker-{n}", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}-{n}"])
        start("celery", celery_argv(env, logs))
        for n, port in enumerate(web_ports):
            start(f"web-{n}", [python, "-m", "blast.web", "-b", "127.0.0.1", "-p", str(port), "blast.asgi:application"])
        hints.send([i for i, _ in instances])
        connected_in = wait(
            lambda: Instance.objects.filter(tenant=tenant, status=Status.CONNECTED).count() == len(instances),
            300,
            what="all instances connected",
        )
        print(f"{len(instances)} instances connected in {connected_in:.1f}s")
        for port in web_ports:
            wait(lambda p=port: _answers(p), 60, what=f"web on {port}")

        def db_counters() -> tuple[int, int]:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                    "WHERE datname = current_database()"
                )
                commits, rows = cursor.fetchone()
            return int(commits), int(rows)

        def phase(media_id: str | None) -> tuple[dict[str, Any], list[str]]:
            """Send ``args.messages`` messages (each with ``media_id`` when given) and wait for every ack."""
            label = "image" if media_id else "bench"
            extra = {"media": media_id} if media_id else {}
            # Spread messages over instances; each client thread owns a slice.
            work = [
                (instances[n % len(instances)][1], f"+1201{5550000 + n % 10000:07d}", f"{label} {n}")
                for n in range(args.messages)
            ]
            errors: list[str] = []
            accepted_at: list[float] = []
            lock = threading.Lock()

            def post(conn: http.client.HTTPConnection, path: str, body: str, headers: dict[str, str]) -> int:
                """POST; the number of messages accepted (0 after recording an error)."""
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.status != 202:
                    with lock:
                        errors.append(f"{response.status}")
                    return 0
                return len(json.loads(data)["messages"]) if args.batch else 1

            def client(index: int) -> None:
                port = web_ports[index % len(web_ports)]
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
                mine = work[index :: args.clients]
                if args.batch:
                    requests = [
                        (
                            "/api/v1/messages/batch",
                            json.dumps(
                                {
                                    "messages": [
                                        {"instance": str(key), "to": to, "text": text, **extra}
                                        for key, to, text in mine[start : start + args.batch]
                                    ]
                                }
                            ),
                        )
                        for start in range(0, len(mine), args.batch)
                    ]
                else:
                    requests = [
                        (f"/api/v1/instances/{key}/messages", json.dumps({"to": to, "text": text, **extra}))
                        for key, to, text in mine
                    ]
                for path, body in requests:
                    try:
                        count = post(conn, path, body, headers)
                    except (OSError, http.client.HTTPException, ValueError) as exc:
                        with lock:
                            errors.append(type(exc).__name__)
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                        continue
                    if count:
                        at = time.monotonic()
                        with lock:
                            accepted_at.extend([at] * count)
                conn.close()

            done_before = Message.objects.filter(tenant=tenant, status__in=acked_statuses).count()
            commits_before, rows_before = db_counters()
            started = time.monotonic()
            if args.preload:
                by_key = dict((str(k), i) for i, k in instances)
                Message.objects.bulk_create(
                    [Message(tenant=tenant, instance_id=by_key[str(key)], to=to, text=text) for key, to, text in work],
                    batch_size=2000,
                )
                hints.send([i for i, _ in instances])
                accepted_at.extend([time.monotonic()] * len(work))
            else:
                threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            accepted_in = time.monotonic() - started
            accepted = len(accepted_at)

            def acked() -> bool:
                done = Message.objects.filter(tenant=tenant, status__in=acked_statuses).count()
                return done - done_before >= accepted

            wait(acked, 1800, interval=0.25, what="every message acked")
            finished = time.monotonic()
            commits_after, rows_after = db_counters()
            return {
                "accepted": accepted,
                "errors": len(errors),
                "acceptance_per_s": round(accepted / accepted_in, 1),
                "delivery_per_s": round(accepted / (finished - min(accepted_at, default=started)), 1),
                "end_to_end_s": round(finished - started, 1),
                "end_to_end_per_s": round(accepted / (finished - started), 1),
                "transactions_per_message": round((commits_after - commits_before) / max(accepted, 1), 2),
                "rows_written_per_message": round((rows_after - rows_before) / max(accepted, 1), 2),
            }, errors

        # Acked: sent, or further along when receipts are on.
        acked_statuses = [MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ]
        text_figures, errors = phase(None)
        deliveries = simulator.control.stats()["deliveries"]
        figures = {
            "command": command_line(),
            **facts,
            "mode": "preloaded (sending side only)" if args.preload else "through the API",
            "messages": args.messages,
            "instances": len(instances),
            "web_processes": args.web,
            "workers": args.workers,
            "client_threads": args.clients,
            "batch": args.batch or "single endpoint",
            "receipts": "delivered and read, recorded" if args.receipts else "off",
            **text_figures,
            "queries_per_acceptance": queries_per_acceptance,
            **({"queries_per_batch": queries_per_batch} if args.batch else {}),
            "deliveries_at_gateway": sum(deliveries.values()),
            "max_deliveries_per_message": max(deliveries.values()) if deliveries else 0,
        }
        if args.media:
            from media.models import Media

            image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 800  # 200 KiB, a PNG to the sniffer
            upload = _upload(web_ports[0], api_key, "catalogue.png", image)
            media_figures, media_errors = phase(upload)
            errors += media_errors
            deliveries = simulator.control.stats()["deliveries"]
            media = Media.objects.get(key=upload)
            fetched = simulator.control.stats()["media_bytes_fetched"]
            figures.update(
                {
                    "media_bytes": len(image),
                    **{f"media_{name}": value for name, value in media_figures.items()},
                    "media_bytes_served_per_message": round(media.bytes_served / max(media_figures["accepted"], 1)),
                    "media_fetches_per_message": round(media.fetches / max(media_figures["accepted"], 1), 2),
                    "media_bytes_fetched_at_gateway": fetched,
                    "deliveries_at_gateway": sum(deliveries.values()),
                    "max_deliveries_per_message": max(deliveries.values()) if deliveries else 0,
                }
            )
        for name, value in figures.items():
            print(f"{name:32s} {value}")
        if errors:
            print("first errors:", errors[:10])
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0 if not errors else 1
    finally:
        group.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        drop_database(admin_url, dbname)


def _upload(port: int, api_key: str, name: str, content: bytes) -> str:
    """POST ``content`` to /api/v1/media as a multipart upload; its media id."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    conn.request("POST", "/api/v1/media", body, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    if response.status != 201:
        raise SystemExit(f"media upload answered {response.status}: {data[:300]!r}")
    return str(json.loads(data)["id"])


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/health/live")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
