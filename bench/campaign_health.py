"""A campaign whose instances fail under it: it completes, each recipient once.

    .venv/bin/python bench/campaign_health.py [--recipients 10000] [--instances 4] [--quick]
        [--logout-at 0.25] [--ban-at 0.5] [--nack-every 20] [--nack-window 0.1 0.75] [--nack-seconds 60]
        [--send-delay 0.02] [--reroute-after 5] [--stranded-fail-s 60] [--timeout 900] [--stall-timeout 240]
        [--platform-env NAME=VALUE ...]
        [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--keep-database]
        [--json bench/results/campaign-health.json]

Issue 17 asks for a 10,000-recipient campaign over 4 instances on the
simulator, with one instance logged out at 25 %, one banned (4402) at 50 %
and repeated rate-limit nacks on a third: the campaign completes, every
recipient gets exactly one message or a failure with its reason, and the
report prints per-instance sent counts, pauses, slow-downs and completion
time.

Starts, each as its own process: the gateway simulator (paired at once, no
receipts), one connection worker, Celery with beat (``campaigns.tick`` every
``BLAST_CAMPAIGN_PERIOD_S`` re-routes the share of a stopped instance,
campaigns/reroute.py) and one web process. Creates a fresh PostgreSQL
database (named after the run, dropped at the end), a tenant with an API key
and N instances (pacing off: no delay, no caps), then, through the API as a
tenant would: a contact list (one CSV upload of the recipients), a campaign
over every instance (round robin, ``send_delay_min_s`` and ``max_s``
``--send-delay``, 0.02 s: 50 sends a second per instance; 0 sends unpaced,
about 2,000 a second on a 2-core machine, and the marks then land late) and its
start. While it runs, this process polls the database and the simulator
every 0.1 s and acts on the simulator (``simulator.control``) when the share
of recipients sent (accepted by the simulator, which acks at once) crosses a
mark:

- ``--logout-at`` (25 %): the first instance is unpaired, as a phone does
  (its session closed with 4401, logged out: it stops for good);
- ``--ban-at`` (50 %): the second gets a ``close`` fault with 4402
  (temporarily banned) for every session, the live one and any later, so it
  stays banned whatever the platform retries;
- inside ``--nack-window`` (10 % to 75 %), for ``--nack-seconds`` (60 s) at
  most: the third gets a ``nack`` fault (``--nack-error`` ``rate_limited``,
  transient, ``retry_after_s`` ``--nack-retry-after``, 5 s) with ``every``
  ``--nack-every`` (20): the simulator nacks one new send in 20 from it. (The time limit ends the episode when the
  third instance is the one holding the rest of the campaign, which would
  otherwise keep the share below 75 % for as long as it is nacked.)

The platform runs with its own policies except ``BLAST_CAMPAIGN_REROUTE_AFTER_S``
(``--reroute-after``, 5 s: an instance not connected that long hands its
share over; the platform's default is 300 s) and
``BLAST_CAMPAIGN_STRANDED_FAIL_H`` (``--stranded-fail-s``, 60 s: a message
a stopped instance had already claimed, ``attempts`` > 0, stays with it and
fails with ``instance_stopped`` this long after the instance stopped; the
default is 24 h), and any ``--platform-env``. When the campaign completes (or after
``--timeout``, or once nothing was sent or failed for ``--stall-timeout``
while messages are queued), prints:

- completion time (campaign ``started_at`` to ``completed_at``), and when
  each mark was crossed and each stopped instance's share began to move;
- per instance: its role, final status, sent, failed, moved in and out (the
  campaign report, ``GET /api/v1/campaigns/<id>/report``), what the
  simulator accepted and nacked, its time down and disconnects (its
  ``ConnectionEvent`` rows: ``disconnect``/``lost`` to ``ready``), and its
  slow-downs and restriction pauses (events ``slowed`` and ``restricted``,
  when the platform writes them);
- campaign pauses (status ``paused``, seen by the poll, with the reason);
- exactly once, from the simulator's deliveries (``"<instance>:<client
  id>"``) against the message rows: recipients delivered twice, recipients
  with neither a delivery nor a failure with a reason, failures by reason,
  and the discrepancies (failed yet delivered, sent yet never delivered,
  delivered through an instance other than the row's).

``--quick`` is a check of the whole path in a minute or two (1,000
recipients, ``--stall-timeout`` 60 s). Exits 1 when the campaign did not complete or a recipient was
delivered twice or left without an outcome.

Not a test: it measures. The figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    utc,
    wait,
)

POLL_S = 0.1
# The campaign's delay between two sends of one instance: 50 a second each, so
# that the marks fall where they are set (unpaced, one worker sends about
# 2,000 a second here and a mark lands several percent late).
SEND_DELAY_S = 0.02
QUICK_RECIPIENTS = 1_000
# Connection event kinds (instances.models.EventKind values, spelled out so
# that a platform without restriction telemetry still runs this benchmark).
DOWN_KINDS = frozenset({"disconnect", "lost"})
UP_KIND = "ready"
SLOWED, RESTRICTED, RESTRICTION_LIFTED = "slowed", "restricted", "restriction_lifted"

TELEMETRY = "events slowed, restricted, restriction_lifted"
NO_TELEMETRY = "none: the platform writes no such events"

LOGOUT, BAN, NACKS, HEALTHY = "logged out", "banned (4402)", "rate-limit nacks", "healthy"
# Instance names, by role: "1-logout", "2-ban", "3-nacks", "4-healthy", ...
SHORT = {LOGOUT: "logout", BAN: "ban", NACKS: "nacks", HEALTHY: "healthy"}
# Shares of the recipients sent whose times the result lists.
SHARES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


# -- figures from records (pure) ------------------------------------------------------------


def phone_of(n: int) -> str:
    """The ``n``-th recipient: +1 201 555 0000 onwards, 10,000 per area code."""
    return f"+1{201 + n // 10_000}555{n % 10_000:04d}"


def roles(count: int) -> list[str]:
    """What happens to each instance, in creation order."""
    return [LOGOUT, BAN, NACKS, *[HEALTHY] * (count - 3)][:count]


def down_spans(events: Iterable[tuple[float, str]], end: float) -> list[tuple[float, float]]:
    """Spans (start, end) an instance was down: from a ``disconnect`` or
    ``lost`` to its next ``ready``, or to ``end``. ``events`` are (time,
    kind) in time order; the instance is up at the first."""
    spans: list[tuple[float, float]] = []
    down_since: float | None = None
    for at, kind in events:
        if kind in DOWN_KINDS and down_since is None:
            down_since = at
        elif kind == UP_KIND and down_since is not None:
            spans.append((down_since, at))
            down_since = None
    if down_since is not None:
        spans.append((down_since, max(end, down_since)))
    return spans


def share_times(offsets: Iterable[float], recipients: int) -> dict[str, float | None]:
    """When each of :data:`SHARES` of ``recipients`` had been sent, from the
    seconds after the start each message was sent (None: never reached)."""
    ordered = sorted(offsets)
    times: dict[str, float | None] = {}
    for share in SHARES:
        needed = max(1, -(-int(share * recipients * 1000) // 1000))
        times[f"{share:.0%}"] = round(ordered[needed - 1], 1) if len(ordered) >= needed else None
    return times


@dataclass(frozen=True)
class Row:
    """One message of the campaign, as the verification needs it."""

    contact_id: int
    client_id: str  # the message's key, hex: the protocol client id
    instance_key: str
    status: str
    failure_reason: str


def exactly_once(contact_ids: Iterable[int], rows: Iterable[Row], deliveries: dict[str, int]) -> dict[str, Any]:
    """Every recipient: one delivery, or a failed row with a reason, never both, never two.

    ``deliveries`` is the simulator's ``"<instance key>:<client id>" -> times
    delivered``. A client id delivered through two instances counts twice
    (the simulator deduplicates per instance only), so a message moved after
    it went out shows as a duplicate."""
    through: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for compound, times in deliveries.items():
        instance_key, _, client_id = compound.partition(":")
        through[client_id][instance_key] = times
    by_contact: dict[int, list[Row]] = collections.defaultdict(list)
    for row in rows:
        by_contact[row.contact_id].append(row)
    figures = collections.Counter(
        {
            "duplicate_deliveries": 0,
            "missing": 0,
            "failed_without_reason": 0,
            "delivered_and_failed": 0,
            "sent_without_delivery": 0,
            "delivered_through_other_instance": 0,
            "still_queued": 0,
            "without_message": 0,
        }
    )
    reasons: collections.Counter[str] = collections.Counter()
    delivered = 0
    for contact_id in contact_ids:
        messages = by_contact.get(contact_id, [])
        if not messages:
            figures["without_message"] += 1
            figures["missing"] += 1
            continue
        times = sum(sum(through.get(m.client_id, {}).values()) for m in messages)
        failed = [m for m in messages if m.status == "failed"]
        if times > 1:
            figures["duplicate_deliveries"] += 1
        if times >= 1:
            delivered += 1
            if failed:
                figures["delivered_and_failed"] += 1
        for m in messages:
            if m.status == "failed":
                reasons[m.failure_reason or "none"] += 1
                if not m.failure_reason:
                    figures["failed_without_reason"] += 1
            elif m.status == "queued":
                figures["still_queued"] += 1
            elif not through.get(m.client_id):
                figures["sent_without_delivery"] += 1
            if any(key != m.instance_key for key in through.get(m.client_id, {})):
                figures["delivered_through_other_instance"] += 1
        if times == 0 and not any(m.failure_reason for m in failed):
            figures["missing"] += 1
    return {
        "recipients_delivered": delivered,
        "recipients_failed": sum(reasons.values()),
        **dict(figures),
        "failures_by_reason": dict(sorted(reasons.items())),
    }


# -- the tenant's side: the API ---------------------------------------------------------------


class Api:
    """The tenant API on one web process, with one API key."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        payload = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}"}
        if payload is not None:
            headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, payload, headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            raise SystemExit(f"{method} {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data) if data else None


def answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/health/live")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """When the benchmark acts, as shares of the recipients sent."""

    logout_at: float
    ban_at: float
    nack_from: float
    nack_until: float
    nack_seconds: float
    nack_every: int
    nack_error: str
    nack_retry_after: float


@dataclass
class Watch:
    """What the poll saw and did, in seconds since the campaign's start."""

    started: float
    timeline: list[tuple[float, str]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    campaign_state: tuple[str, str] = ("", "")
    pauses: list[list[Any]] = field(default_factory=list)  # [reason, start, end or None]
    instance_status: dict[int, str] = field(default_factory=dict)
    nack_base: int | None = None
    nacks_set: int = 0
    last_event: int = 0  # the last telemetry event seen (ConnectionEvent id)
    longest_turn_s: float = 0.0

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def note(self, what: str) -> None:
        at = self.now()
        self.timeline.append((at, what))
        print(f"  {at:7.1f}s  {what}")

    def mark(self, name: str, what: str) -> bool:
        """Record ``name`` the first time; True then."""
        if name in self.marks:
            return False
        self.marks[name] = self.now()
        self.note(what)
        return True


def poll(campaign_id: int) -> dict[str, Any]:
    """The campaign's status and its messages' counts, with what moved off each instance."""
    from django.db.models import Count, Q

    from campaigns.models import Campaign, Message, MessageStatus

    status, reason = Campaign.objects.filter(pk=campaign_id).values_list("status", "pause_reason").get()
    counts = Message.objects.filter(campaign_id=campaign_id).aggregate(
        messages=Count("id"),
        sent=Count("id", filter=Q(sent_at__isnull=False)),
        failed=Count("id", filter=Q(status=MessageStatus.FAILED)),
        queued=Count("id", filter=Q(status=MessageStatus.QUEUED)),
    )
    moved = dict(
        Message.objects.filter(campaign_id=campaign_id, moved_from__isnull=False)
        .values_list("moved_from_id")
        .annotate(n=Count("id"))
        .values_list("moved_from_id", "n")
    )
    return {"status": status, "pause_reason": reason, **counts, "moved_from": moved}


def step(
    watch: Watch,
    plan: Plan,
    state: dict[str, Any],
    recipients: int,
    ids: list[int],
    names: dict[int, str],
    keys: dict[int, str],
    control: Any,
) -> None:
    """One turn of the poll: record transitions, act at the marks, owe nacks."""
    from instances.models import ConnectionEvent, Instance

    # The marks count what the gateway accepted: the database learns of an
    # ack when the worker's next flush writes it, a moment (or, under load,
    # seconds) later.
    accepted = {pk: int(control.stats(keys[pk])["accepted"]) for pk in ids}
    share = sum(accepted.values()) / max(recipients, 1)
    recorded = f"{state['sent'] / max(recipients, 1):.0%} recorded"
    campaign_state = (state["status"], state["pause_reason"])
    if campaign_state != watch.campaign_state:
        watch.note(f"campaign {state['status']}" + (f" ({state['pause_reason']})" if state["pause_reason"] else ""))
        if watch.pauses and watch.pauses[-1][2] is None:
            watch.pauses[-1][2] = watch.now()
        if state["status"] == "paused":
            watch.pauses.append([state["pause_reason"], watch.now(), None])
        watch.campaign_state = campaign_state
    for pk, status in Instance.objects.filter(pk__in=ids).values_list("pk", "status"):
        if watch.instance_status.get(pk) != status:
            if pk in watch.instance_status:
                watch.note(f"{names[pk]}: {watch.instance_status[pk]} -> {status}")
            watch.instance_status[pk] = status
    telemetry = ConnectionEvent.objects.filter(
        instance_id__in=ids, kind__in=(SLOWED, RESTRICTED, RESTRICTION_LIFTED), id__gt=watch.last_event
    ).order_by("id")
    for event_id, pk, kind, message in telemetry.values_list("id", "instance_id", "kind", "message"):
        watch.note(f"{names[pk]}: {kind} ({message})")
        watch.last_event = event_id
    for pk, n in state["moved_from"].items():
        if pk in names:
            watch.mark(f"moved_{pk}", f"{names[pk]}: its share starts moving ({n} moved so far)")
    logout, ban, nacked = ids[0], ids[1], ids[2]
    if share >= plan.logout_at and watch.mark(
        "logout", f"{share:.0%} sent ({recorded}): {names[logout]} unpaired (4401)"
    ):
        control.unpair(keys[logout])
    if share >= plan.ban_at and watch.mark(
        "ban", f"{share:.0%} sent ({recorded}): {names[ban]} banned (4402, every session)"
    ):
        control.set_fault("close", instance=keys[ban], code=4402)
    opened = watch.marks.get("nacks")
    over = share >= plan.nack_until or (opened is not None and watch.now() - opened >= plan.nack_seconds)
    if plan.nack_from <= share and not over and "nacks_end" not in watch.marks:
        if watch.nack_base is None:
            watch.marks["nacks"] = watch.now()
            watch.nack_base = accepted[nacked]
            watch.note(f"{share:.0%} sent: rate-limit nacks on {names[nacked]}, one every {plan.nack_every} sends")
            # The simulator nacks the Nth, 2Nth, ... new send while the fault lasts.
            control.set_fault(
                "nack",
                instance=keys[nacked],
                every=plan.nack_every,
                error=plan.nack_error,
                retry_after_s=plan.nack_retry_after,
            )
    elif over and watch.nack_base is not None:
        if watch.mark("nacks_end", f"{share:.0%} sent: nacks on {names[nacked]} end"):
            control.clear_faults(keys[nacked])
    if watch.nack_base is not None:
        watch.nacks_set = int(control.stats(keys[nacked])["nacked"])


def instance_figures(
    ids: list[int],
    keys: dict[int, str],
    since: float,
    end: float,
    report: dict[str, Any],
    stats: dict[str, Any],
    last_sent: dict[int, float],
) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """One row per instance; and which telemetry event kinds the platform knows."""
    from instances.models import ConnectionEvent, EventKind, Instance

    known = {kind: kind in EventKind.values for kind in (SLOWED, RESTRICTED, RESTRICTION_LIFTED)}
    events: dict[int, list[tuple[float, str]]] = collections.defaultdict(list)
    reasons: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for pk, at, kind, reason in (
        ConnectionEvent.objects.filter(instance_id__in=ids, at__gte=utc(since))
        .order_by("at", "id")
        .values_list("instance_id", "at", "kind", "reason")
    ):
        events[pk].append((at.timestamp() - since, kind))
        if kind in DOWN_KINDS:
            reasons[pk][reason or "?"] += 1
    shares = {row["instance"]: row for row in report.get("instances", [])}
    gateway = stats.get("instances", {})
    rows = []
    details = Instance.objects.filter(pk__in=ids).values_list("pk", "name", "status", "last_reason", "paused_until")
    by_pk = {row[0]: row[1:] for row in details}
    for pk, role in zip(ids, roles(len(ids)), strict=True):
        name, status, last_reason, paused_until = by_pk[pk]
        paused_for = paused_until.timestamp() - end if paused_until is not None else 0.0
        share = shares.get(keys[pk], {})
        seen = gateway.get(keys[pk], {})
        spans = down_spans(events[pk], end - since)
        kinds = collections.Counter(kind for _, kind in events[pk])
        rows.append(
            {
                "instance": name,
                "role": role,
                "status": status + (f" ({last_reason})" if last_reason and status != "connected" else ""),
                "sent": share.get("sent"),
                "failed": share.get("failed"),
                "queued": share.get("queued"),
                "moved_in": share.get("moved_in"),
                "moved_out": share.get("moved_out"),
                "last_sent_s": last_sent.get(pk),
                "accepted_at_gateway": seen.get("accepted"),
                "nacked_at_gateway": seen.get("nacked"),
                "resends_answered_from_dedup": seen.get("duplicates"),
                "disconnects": sum(reasons[pk].values()),
                "disconnect_reasons": dict(reasons[pk]),
                "down_s": round(sum(b - a for a, b in spans), 1),
                "slowdowns": kinds[SLOWED],
                "restriction_pauses": kinds[RESTRICTED],
                "restrictions_lifted": kinds[RESTRICTION_LIFTED],
                "sending_paused_for_s_at_end": round(max(paused_for, 0.0), 1),
            }
        )
    return rows, known


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=None, help="recipients (default 10000; --quick: 1000)")
    parser.add_argument("--instances", type=int, default=4, help="instances of the campaign (at least 3)")
    parser.add_argument("--quick", action="store_true", help=f"a quick check: {QUICK_RECIPIENTS} recipients")
    parser.add_argument("--logout-at", type=float, default=0.25, help="share sent when the 1st is logged out")
    parser.add_argument("--ban-at", type=float, default=0.50, help="share sent when the 2nd is banned (4402)")
    parser.add_argument("--nack-every", type=int, default=20, help="the 3rd: one nack per this many sends")
    parser.add_argument(
        "--nack-window", type=float, nargs=2, default=(0.10, 0.75), metavar=("FROM", "UNTIL"), help="shares sent"
    )
    parser.add_argument("--nack-seconds", type=float, default=60.0, help="the nacks last at most this long")
    parser.add_argument("--nack-error", default="rate_limited", help="the nack's error (e.g. whatsapp_error_429)")
    parser.add_argument("--nack-retry-after", type=float, default=5.0, help="the nack's retry_after_s")
    parser.add_argument(
        "--send-delay",
        type=float,
        default=SEND_DELAY_S,
        help="the campaign's send_delay_min_s and max_s (0: unpaced)",
    )
    parser.add_argument("--reroute-after", type=float, default=5.0, help="BLAST_CAMPAIGN_REROUTE_AFTER_S")
    parser.add_argument(
        "--stranded-fail-s", type=float, default=60.0, help="BLAST_CAMPAIGN_STRANDED_FAIL_H, in seconds"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the campaign to complete")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=None,
        help="give up when no message was sent or failed for this long while some are queued (240; --quick: 60)",
    )
    parser.add_argument(
        "--platform-env", action="append", default=[], metavar="NAME=VALUE", help="another platform setting"
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep-database", action="store_true", help="leave the run's database for inspection")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    recipients = args.recipients or (QUICK_RECIPIENTS if args.quick else 10_000)
    if args.stall_timeout is None:
        args.stall_timeout = 60.0 if args.quick else 240.0
    if args.instances < 3:
        parser.error("--instances: at least 3 (one logged out, one banned, one rate-limited)")
    if not 0 < args.logout_at <= 1 or not 0 < args.ban_at <= 1 or args.nack_every < 1:
        parser.error("--logout-at and --ban-at are shares in (0, 1]; --nack-every at least 1")
    extra_env = dict(item.split("=", 1) for item in args.platform_env if "=" in item)
    if len(extra_env) != len(args.platform_env):
        parser.error("--platform-env takes NAME=VALUE")
    plan = Plan(
        args.logout_at,
        args.ban_at,
        args.nack_window[0],
        args.nack_window[1],
        args.nack_seconds,
        args.nack_every,
        args.nack_error,
        args.nack_retry_after,
    )

    facts = run_facts()
    load_at_start = os.getloadavg()[0]
    tag = uuid.uuid4().hex[:8]
    admin_url = args.database_url
    dbname = f"blast_bench_{tag}"
    database_url = create_database(admin_url, dbname)
    logs = ROOT / ".run" / f"bench-campaign-health-{tag}"
    platform_env = {
        "BLAST_CAMPAIGN_REROUTE_AFTER_S": f"{args.reroute_after:g}",
        "BLAST_CAMPAIGN_STRANDED_FAIL_H": f"{args.stranded_fail_s / 3600:.6g}",
        **extra_env,
    }
    env = bench_env(
        tag,
        database_url,
        BLAST_SEND_DELAY_MIN_S="0",
        BLAST_SEND_DELAY_MAX_S="0",
        BLAST_HOURLY_CAP="0",
        BLAST_DAILY_CAP="0",
        **platform_env,
    )
    python = sys.executable
    group = Processes(env, logs)
    start = group.start
    complete = clean = False

    try:
        setup_django(env)
        from django.conf import settings

        from api.models import ApiKey
        from campaigns.models import Campaign, Contact, Message
        from instances import hints
        from instances.models import Instance, Status

        web_port = free_port()
        simulator = start_simulator(group, "--receipt-delay", "-1")
        control = simulator.control
        tenant, gateway = bench_tenant(tag, simulator)
        ids = create_instances(tenant, gateway, args.instances)
        names = {}
        for n, (pk, role) in enumerate(zip(ids, roles(len(ids)), strict=True)):
            names[pk] = f"{n + 1}-{SHORT[role]}"
            Instance.objects.filter(pk=pk).update(name=names[pk])
        keys = {pk: str(key) for pk, key in Instance.objects.filter(pk__in=ids).values_list("pk", "key")}
        _, api_key = ApiKey.objects.create_key(tenant, "bench")

        start("worker", [python, "manage.py", "run_connection_worker", "--worker-id", f"bench-{tag}"])
        start("celery", celery_argv(env, logs))
        start("web", [python, "-m", "blast.web", "-b", "127.0.0.1", "-p", str(web_port), "blast.asgi:application"])
        hints.send(ids)
        connected_in = wait(
            lambda: Instance.objects.filter(pk__in=ids, status=Status.CONNECTED).count() == len(ids),
            120,
            what="every instance connected",
        )
        wait(lambda: answers(web_port), 60, what="the web process")
        print(f"{len(ids)} instances connected in {connected_in:.1f}s")

        api = Api(web_port, api_key)
        contact_list = api.call("POST", "/api/v1/contact-lists", {"name": "bench"})
        csv_body = "phone,name\n" + "".join(f"{phone_of(n)},R{n}\n" for n in range(recipients))
        uploaded = api.call("POST", f"/api/v1/contact-lists/{contact_list['id']}/upload", csv_body.encode(), "text/csv")
        if uploaded["created"] != recipients:
            raise SystemExit(f"the upload created {uploaded['created']} contacts of {recipients}: {uploaded}")
        campaign = api.call(
            "POST",
            "/api/v1/campaigns",
            {
                "name": "campaign health",
                "template": "{Hi|Hello} {{name}}, this is the campaign health bench.",
                "contact_list": contact_list["id"],
                "instances": [keys[pk] for pk in ids],
                "rotation": "round_robin",
                "send_delay_min_s": args.send_delay,
                "send_delay_max_s": args.send_delay,
            },
        )
        campaign_id = Campaign.objects.get(key=campaign["id"]).pk
        print(f"{recipients} recipients uploaded; starting the campaign")

        started_wall = time.time()
        watch = Watch(time.monotonic())
        api.call("POST", f"/api/v1/campaigns/{campaign['id']}/start")
        watch.note("campaign started")
        state = poll(campaign_id)
        deadline = watch.started + args.timeout
        done, moved_at = -1, time.monotonic()
        stalled = False
        while time.monotonic() < deadline:
            turn = time.monotonic()
            state = poll(campaign_id)
            step(watch, plan, state, recipients, ids, names, keys, control)
            watch.longest_turn_s = max(watch.longest_turn_s, time.monotonic() - turn)
            if state["status"] in ("completed", "cancelled"):
                break
            if state["sent"] + state["failed"] != done:
                done, moved_at = state["sent"] + state["failed"], time.monotonic()
            elif state["queued"] and time.monotonic() - moved_at > args.stall_timeout:
                stalled = True
                break
            time.sleep(POLL_S)
        complete = state["status"] == "completed"
        if not complete:
            why = f"nothing sent or failed for {args.stall_timeout:g}s" if stalled else f"{args.timeout:g}s passed"
            watch.note(f"gave up, {why}: {state['sent']} sent, {state['failed']} failed, {state['queued']} queued")
        if watch.pauses and watch.pauses[-1][2] is None:
            watch.pauses[-1][2] = watch.now()
        ended_wall = time.time()

        report = api.call("GET", f"/api/v1/campaigns/{campaign['id']}/report")
        stats = control.stats()
        row = Campaign.objects.get(pk=campaign_id)
        assert row.started_at is not None
        contact_ids = list(Contact.objects.filter(contact_list__key=contact_list["id"]).values_list("id", flat=True))
        rows = [
            Row(contact, key.hex, str(instance_key), status, reason)
            for contact, key, instance_key, status, reason in Message.objects.filter(
                campaign_id=campaign_id
            ).values_list("contact_id", "key", "instance__key", "status", "failure_reason")
        ]
        once = exactly_once(contact_ids, rows, stats["deliveries"])
        sent_at = Message.objects.filter(campaign_id=campaign_id, sent_at__isnull=False).values_list(
            "instance_id", "sent_at"
        )
        offsets: dict[int, list[float]] = collections.defaultdict(list)
        for pk, at in sent_at:
            offsets[pk].append((at - row.started_at).total_seconds())
        last_sent = {pk: round(max(times), 1) for pk, times in offsets.items()}
        per_instance, known = instance_figures(ids, keys, started_wall, ended_wall, report, stats, last_sent)
        telemetry = all(known.values())
        completion = (
            round((row.completed_at - row.started_at).total_seconds(), 1)
            if row.completed_at and row.started_at
            else None
        )

        def moved_after(mark: str, pk: int) -> float | None:
            moved = watch.marks.get(f"moved_{pk}")
            return round(moved - watch.marks[mark], 1) if moved is not None and mark in watch.marks else None

        figures: dict[str, Any] = {
            "command": command_line(),
            **facts,
            "recipients": recipients,
            "instances": len(ids),
            "workers": 1,
            "campaign_send_delay_s": args.send_delay,
            "scenario": (
                f"{names[ids[0]]} logged out at {plan.logout_at:.0%}, {names[ids[1]]} banned (4402) at "
                f"{plan.ban_at:.0%}, {names[ids[2]]} nacked ({plan.nack_error}, retry after "
                f"{plan.nack_retry_after:g} s) once every {plan.nack_every} sends from {plan.nack_from:.0%} to "
                f"{plan.nack_until:.0%} sent, for {plan.nack_seconds:g} s at most"
            ),
            "platform_env": platform_env,
            "completed": complete,
            "stalled": stalled,
            "campaign_status": row.status,
            "completion_s": completion,
            "last_send_after_start_s": max(last_sent.values(), default=None),
            "sent_share_at_s": share_times((t for times in offsets.values() for t in times), recipients),
            "sent": report["throughput"]["sent"],
            "failed": report["counts"]["failed"],
            "queued_at_end": report["counts"]["queued"],
            "failures_by_reason": report["failures"],
            "skipped": report["skipped"]["total"],
            **{k: v for k, v in once.items() if k != "failures_by_reason"},
            "exactly_once": once["duplicate_deliveries"] == 0 and once["missing"] == 0,
            "logout_at_s": watch.marks.get("logout"),
            "ban_at_s": watch.marks.get("ban"),
            "share_moved_after_logout_s": moved_after("logout", ids[0]),
            "share_moved_after_ban_s": moved_after("ban", ids[1]),
            "nacks_set": watch.nacks_set,
            "nacks_at_gateway": sum(int(s.get("nacked", 0)) for s in stats.get("instances", {}).values()),
            "campaign_pauses": len(watch.pauses),
            "campaign_paused_s": round(sum(end - begin for _, begin, end in watch.pauses), 1),
            "campaign_pause_reasons": sorted({reason for reason, _, _ in watch.pauses}),
            "slowdowns": sum(r["slowdowns"] for r in per_instance) if telemetry else None,
            "restriction_pauses": sum(r["restriction_pauses"] for r in per_instance) if telemetry else None,
            "restriction_telemetry": TELEMETRY if telemetry else NO_TELEMETRY,
            "campaign_period_s": float(settings.BLAST_CAMPAIGN_PERIOD_S),
            # The marks are acted on at most this late (one turn of the poll).
            "longest_poll_turn_s": round(watch.longest_turn_s, 2),
            "cores": os.cpu_count(),
            "load_average_at_start": round(load_at_start, 2),
            "per_instance": per_instance,
            "timeline": [{"at_s": at, "event": what} for at, what in watch.timeline],
        }
        show(figures)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
        clean = bool(figures["exactly_once"])
        return 0 if complete and clean else 1
    finally:
        group.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if args.keep_database:
            print(f"database kept: {database_url}")
        else:
            drop_database(admin_url, dbname)


def show(figures: dict[str, Any]) -> None:
    """The figures as lines, the per-instance ones as a table."""
    for name, value in figures.items():
        if name in ("per_instance", "timeline"):
            continue
        print(f"{name:36s} {value}")
    columns = [
        ("instance", "instance"),
        ("role", "role"),
        ("status", "status"),
        ("sent", "sent"),
        ("failed", "failed"),
        ("moved_in", "in"),
        ("moved_out", "out"),
        ("nacked_at_gateway", "nacked"),
        ("disconnects", "drops"),
        ("down_s", "down s"),
        ("slowdowns", "slowed"),
        ("restriction_pauses", "restricted"),
    ]
    rows = [[str(r.get(key)) for key, _ in columns] for r in figures["per_instance"]]
    widths = [max(len(head), *(len(row[i]) for row in rows)) for i, (_, head) in enumerate(columns)]
    print()
    print("  ".join(head.ljust(w) for (_, head), w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    raise SystemExit(main())
