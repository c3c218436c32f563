"""Assemble docs/BENCHMARKS.md from the results in bench/results/.

    .venv/bin/python bench/report.py [--results bench/results] [--output docs/BENCHMARKS.md]
        [--plot docs/benchmarks/restart-ready.png] [--outage-plot docs/benchmarks/outage-ready.png]

Reads what ``make bench`` (scripts/bench.sh) leaves in the results folder:

- ``connections.json`` and ``connections-timeline.csv`` (bench/connections.py);
- ``messages.json``, and any further ``messages-*.json`` (bench/messages.py);
- ``inbound.json``, and any further ``inbound-*.json`` (bench/inbound.py);
- ``campaign-health.json``, and any further ``campaign-health-*.json``
  (bench/campaign_health.py);
- ``health-latency.json`` (bench/health_latency.py);
- ``baseline.json`` (bench/baseline.py), rendered generically: whatever
  figures it holds become tables; its gateway-outage scenarios also as one
  table, beside the outage phase of ``connections.json``;
- ``chaos-soak.txt``: the chaos soak's printed output, its command on a first
  line starting with ``$``.

Writes the page: the machine's facts (read now, on this machine), then per
benchmark the exact command, the figures and the targets the issues name,
and plots of sessions ready over time after a gateway restart and after a
gateway outage (matplotlib, Agg backend). A missing result renders as "not
measured yet" with the command that produces it.

About 800 lines: one renderer per benchmark, each small, in one file so that
the published page has one author.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Keys the runner adds to every result: shown above the figures, not in them.
META = ("command", "measured_at", "commit", "exit_status")

# The commands `make bench` runs (scripts/bench.sh), shown where a result is missing.
COMMANDS = {
    "connections": ".venv/bin/python bench/connections.py --sessions 10000 "
    "--timeline bench/results/connections-timeline.csv --json bench/results/connections.json",
    "messages": ".venv/bin/python bench/messages.py --messages 50000 --instances 1000 --batch 500 "
    "--database-url postgres://postgres@127.0.0.1:5432/postgres --json bench/results/messages.json",
    "inbound": ".venv/bin/python bench/inbound.py --rate 1000 --seconds 30 --instances 50 "
    "--database-url postgres://postgres@127.0.0.1:5432/postgres --json bench/results/inbound.json",
    "campaign_health": ".venv/bin/python bench/campaign_health.py --recipients 10000 --instances 4 "
    "--database-url postgres://postgres@127.0.0.1:5432/postgres --json bench/results/campaign-health.json",
    "health": ".venv/bin/python bench/health_latency.py --instances 10000 --concurrency 50 --seconds 30 "
    "--json bench/results/health-latency.json",
    "baseline": ".venv/bin/python bench/baseline.py --instances 100 --minutes 10 --outage-minutes 10 "
    "--json bench/results/baseline.json",
    "scaleout": ".venv/bin/python bench/scaleout.py --instances 9000 --workers 3 "
    "--database-url postgres://postgres@127.0.0.1:5432/postgres --json bench/results/scaleout.json",
    "chaos": ".venv/bin/python bench/chaos_soak.py --instances 1000 --minutes 30 --seed 1 "
    "--database-url postgres://postgres@127.0.0.1:5432/postgres "
    "| tee bench/results/chaos-soak.txt",
}


@dataclass(frozen=True)
class Target:
    """A figure's target as an issue states it, and whether a result meets it."""

    text: str
    met: Callable[[Any], bool]


def _at_most(limit: float) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int | float) and value <= limit


def _at_least(limit: float) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int | float) and value >= limit


CONNECTION_TARGETS = {
    "worker_rss_per_session_kib": Target("<= 64 KiB", _at_most(64)),
    "restart_ready_99_percent_s": Target("<= 45 s", _at_most(45)),
    "max_concurrent_sessions_per_instance": Target("1", lambda value: value == 1),
}
MESSAGE_TARGETS = {"end_to_end_per_s": Target(">= 1,000 messages/s", _at_least(1000))}
# Issue 16: 1,000 inbound messages a second into the database and out as webhooks. The
# simulator offers exactly 1,000 a second, so a database that keeps up measures 1,000 give
# or take the clock's jitter: within 1 % counts as keeping up. The webhooks go out in
# batches every BLAST_WEBHOOK_PERIOD_S, so theirs is judged by keeping up with the
# database: the last event out within one period (and 2 s of slack) of the last row.
INBOUND_TARGETS = {
    "stored_per_s": Target(">= 1,000 inbound/s (990 and up: the offered 1,000 within 1 %)", _at_least(990)),
    "lost_before_database": Target("0", lambda value: value == 0),
    "lost_before_webhook": Target("0", lambda value: value == 0),
}
# Of the webhook side alone (bench/inbound.py --preload): what it is judged on.
INBOUND_WEBHOOK_SIDE = ("lost_before_webhook",)
# Issue 16 asks for the lag's p95 without a bound: shown beside the targets, judged by nobody.
INBOUND_LAGS = ("stored_lag_p95_ms", "webhook_lag_p95_ms")
INBOUND_SERIES = {
    "stored_each_second": "Rows stored in each second after the first frame (second: rows)",
    "webhook_events_each_second": "Webhook events received in each second after the first frame (second: events)",
}
# Issue 17: a 10,000-recipient campaign over 4 instances, one logged out at 25 %, one banned
# (4402) at 50 %, repeated rate-limit nacks on a third.
CAMPAIGN_HEALTH_TARGET = (
    "10,000 recipients over 4 instances, one logged out at 25 %, one banned (4402) at 50 %, rate-limit nacks "
    "on a third: the campaign completes, every recipient gets exactly one message or a failure with its reason"
)
CAMPAIGN_HEALTH_TARGETS = {
    "completed": Target("completes", lambda value: value is True),
    "duplicate_deliveries": Target("0 recipients delivered twice", lambda value: value == 0),
    "missing": Target("0 recipients without a delivery or a failure with its reason", lambda value: value == 0),
}
# The platform settings bench/campaign_health.py always sets (low, so that a run takes minutes).
CAMPAIGN_HEALTH_SET = ("BLAST_CAMPAIGN_REROUTE_AFTER_S", "BLAST_CAMPAIGN_STRANDED_FAIL_H")
# Issue 17 asks for these without a bound: shown beside the targets, judged by nobody.
CAMPAIGN_HEALTH_REPORTED = ("completion_s", "campaign_pauses", "slowdowns", "restriction_pauses")
# The per-instance rows of bench/campaign_health.py, as the table shows them.
CAMPAIGN_HEALTH_COLUMNS = {
    "instance": "instance",
    "role": "role",
    "status": "status at the end",
    "sent": "sent",
    "failed": "failed",
    "queued": "queued at the end",
    "moved_in": "moved in",
    "moved_out": "moved out",
    "accepted_at_gateway": "accepted at the gateway",
    "nacked_at_gateway": "nacked",
    "disconnects": "disconnects",
    "down_s": "down (s)",
    "slowdowns": "slow-downs",
    "restriction_pauses": "restriction pauses",
    "sending_paused_for_s_at_end": "sending paused for (s) at the end",
    "last_sent_s": "last sent (s after start)",
}
# The outage phase of bench/connections.py; its figures are shown under "Gateway outages".
OUTAGE_TARGETS = {
    "outage_ready_99_percent_s": Target("<= 60 s", _at_most(60)),
    "outage_peak_attempts_per_s": Target("<= 200, the connect rate (`BLAST_GATEWAY_CONNECT_RATE`)", _at_most(200)),
    "outage_breakers_open": Target("0", lambda value: value == 0),
}
OUTAGE_SCENARIOS = ("outage", "refused", "timeout")
# The per-second series of the outage phase, shown under its table.
OUTAGE_SERIES = {
    "outage_platform_attempts_per_second": "Upgrade requests the platform sent per second",
    "outage_gateway_attempts_per_second": "Upgrade requests the simulator read per second",
    "outage_attempts_per_second": "Connection attempts per second (worker's events)",
}
# Blast's side of bench/baseline.py, per outage scenario.
BASELINE_OUTAGE_TARGETS = {
    "attempts_per_instance_mean": Target("<= 3 attempts per instance during the outage", _at_most(3)),
    "recovery_s": Target("all ready <= 30 s after the outage ends", _at_most(30)),
}
SCALEOUT_TARGETS = {
    "largest_distance_from_even_percent": Target("every worker within 10 % of an even share", _at_most(10)),
    "join_even_within_10_percent_s": Target("within 10 % again <= 60 s after a worker joins", _at_most(60)),
    "max_concurrent_sessions_per_instance": Target("1", lambda value: value == 1),
    "sigterm_all_connected_s": Target("all connected again <= 10 s after SIGTERM of one", _at_most(10)),
}
FLAPPING_TARGET = Target("about 10 attempts per instance in 10 minutes, as before", lambda v: _near(v, 10, 1))
CPU_NOTE = (
    "Every process of a run (simulators, connection worker, Celery, the baseline's clients and the driver) "
    "runs on this one machine and shares its {cores} cores: a figure in seconds includes waiting for the CPU."
)


def _near(value: Any, centre: float, spread: float) -> bool:
    return isinstance(value, int | float) and abs(value - centre) <= spread


CHAOS_TARGET = "1,000 instances for 30 minutes, every invariant passes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "benchmarks" / "restart-ready.png")
    parser.add_argument("--outage-plot", type=Path, default=ROOT / "docs" / "benchmarks" / "outage-ready.png")
    args = parser.parse_args()

    page = Page(args.results, args.output, args.plot, args.outage_plot)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page.render())
    print(" and ".join([f"wrote {_shown(args.output)}", *(_shown(plot) for plot in page.plotted)]))
    return 0


class Page:
    """The markdown page, built section by section from the results folder."""

    def __init__(self, results: Path, output: Path, plot: Path, outage_plot: Path | None = None) -> None:
        self.results = results
        self.output = output
        self.plot = plot
        self.outage_plot = outage_plot or plot.with_name("outage-ready.png")
        self.plotted: list[Path] = []
        self.verdicts: list[tuple[str, str, str, str, str]] = []  # benchmark, figure, target, measured, verdict

    def render(self) -> str:
        sections = [
            self.connections(),
            self.messages(),
            self.inbound(),
            self.campaign_health(),
            self.health(),
            self.baseline(),
            self.outages(),
            self.scaleout(),
            self.chaos(),
        ]
        head = [
            "# Benchmarks",
            "",
            "Generated by `bench/report.py` (`make bench-report`) from the results in "
            f"`{_shown(self.results)}/`; `make bench` measures them again. Do not edit by hand.",
            "",
            "## Machine",
            "",
            "Read when this page was generated. Every benchmark starts all of its processes on this one machine.",
            "",
            table(["", "fact"], [[name, value] for name, value in machine_facts()]),
            "",
            "## Targets",
            "",
            table(["benchmark", "figure", "target", "measured", "verdict"], [list(v) for v in self.verdicts]),
            "",
        ]
        return "\n".join([*head, *sections]).rstrip() + "\n"

    # -- sections ---------------------------------------------------------------

    def connections(self) -> str:
        out = ["## Connections: one worker holding N sessions", ""]
        data = self.load("connections.json")
        if data is None:
            self.missing_targets("connections", CONNECTION_TARGETS)
            return _join(out, not_measured("connections"))
        restart = {k: v for k, v in data.items() if not is_outage_figure(k)}
        out += [*_block(meta_block(data)), figures_table(restart, CONNECTION_TARGETS, skip={"attempts_per_second"}), ""]
        if any(is_outage_figure(k) for k in data):
            out += ["The outage phase of this run is under [Gateway outages](#gateway-outages).", ""]
        self.judge("connections", data, CONNECTION_TARGETS)
        per_second = data.get("attempts_per_second") or {}
        if per_second:
            spread = " ".join(f"{s}s:{n}" for s, n in sorted(per_second.items(), key=lambda kv: int(kv[0])))
            out += ["Connection attempts per second after the restart (second: attempts):", "", code(spread), ""]
        timeline = self.results / "connections-timeline.csv"
        if timeline.exists():
            plot_restart(timeline, data, self.plot)
            self.plotted.append(self.plot)
            link = os.path.relpath(self.plot, self.output.parent)
            out += [
                f"Sessions ready over time after the gateway restarted every session at once (`{_shown(timeline)}`):",
                "",
                f"![Sessions ready after a gateway restart]({link})",
                "",
            ]
        else:
            out += ["No restart timeline yet: run `make bench BENCH=connections`.", ""]
        return _join(out)

    def messages(self) -> str:
        out = ["## Messages: API to worker to gateway ack, PostgreSQL", ""]
        files = sorted(self.results.glob("messages*.json"))
        if not files:
            self.missing_targets("messages", MESSAGE_TARGETS)
            return _join(out, not_measured("messages"))
        for path in files:
            data = json.loads(path.read_text())
            if len(files) > 1:
                out += [f"### {data.get('mode', path.stem)}, batch {data.get('batch', '-')}", ""]
            out += [*_block(meta_block(data)), figures_table(data, MESSAGE_TARGETS), ""]
            self.judge(f"messages ({path.stem})" if len(files) > 1 else "messages", data, MESSAGE_TARGETS)
        return _join(out)

    def inbound(self) -> str:
        out = ["## Inbound: gateway to worker to database to webhooks, PostgreSQL", ""]
        files = self.runs("inbound")
        if not files:
            self.missing_targets("inbound", INBOUND_TARGETS)
            return _join(out, not_measured("inbound"))
        cores = json.loads(files[0].read_text()).get("cores") or os.cpu_count() or "?"
        out += [
            "The simulator sends `inbound` frames at a fixed rate, round robin over the instances "
            "(`POST /_control/inbound-burst`, each text stamped with the time its frame was written); the "
            "connection worker stores them in batches of up to 500 (`campaigns.inbound.handle_many`), and "
            "Celery's fan-out job (every `BLAST_WEBHOOK_PERIOD_S`) turns the rows into signed `message.inbound` "
            "webhook deliveries "
            "of up to `BLAST_WEBHOOK_BATCH` events, posted to a receiver on 127.0.0.1. A stage's rate is its "
            "messages over the time from the first frame sent to its last message (for the webhooks that "
            "includes the wait for the last fan-out); lags run from a frame's stamp to its row's `received_at` "
            "(when the worker began storing it) and to the webhook's arrival. The webhooks keep up when their "
            "last event arrives within one fan-out period of the last row. With `--preload` the driver stores "
            "the rows itself at the same pace, which measures the webhook side alone. CPU is per process "
            "while the frames went out (100 % is one core). Every "
            "process (simulator, worker, Celery, PostgreSQL, Redis, and the driver with its receiver) runs on "
            f"this one machine and shares its {cores} cores; the load average at the start says how busy the "
            "machine already was.",
            "",
        ]
        for path in files:
            data = json.loads(path.read_text())
            preload = "directly" in str(data.get("mode", ""))
            period = data.get("webhook_period_s")
            targets = {k: v for k, v in INBOUND_TARGETS.items() if not preload or k in INBOUND_WEBHOOK_SIDE}
            if isinstance(period, int | float):
                targets["webhooks_behind_database_s"] = Target(
                    f"<= {fmt(period + 2)} s: one fan-out period (`BLAST_WEBHOOK_PERIOD_S`) and 2 s",
                    _at_most(period + 2),
                )
            name = "inbound" if path.name == "inbound.json" else f"inbound ({path.stem.removeprefix('inbound-')})"
            if len(files) > 1:
                out += [f"### {data.get('mode', path.stem)}", ""]
            out += [*_block(meta_block(data)), figures_table(data, targets, skip=set(INBOUND_SERIES)), ""]
            self.judge(name, data, targets)
            if not preload:
                for key in INBOUND_LAGS:
                    shown = fmt(data.get(key))
                    self.verdicts.append((name, label(key), "reported (issue 16 names no bound)", shown, "reported"))
            for series, what in INBOUND_SERIES.items():
                per_second = data.get(series) or {}
                if per_second:
                    spread = " ".join(f"{s}s:{n}" for s, n in sorted(per_second.items(), key=lambda kv: int(kv[0])))
                    out += [f"{what}:", "", code(spread), ""]
        return _join(out)

    def campaign_health(self) -> str:
        out = ["## Campaign health: instances failing under a running campaign, PostgreSQL", ""]
        files = self.runs("campaign-health")
        if not files:
            self.verdicts.append(("campaign health", "scenario", CAMPAIGN_HEALTH_TARGET, "-", "not measured yet"))
            self.missing_targets("campaign health", CAMPAIGN_HEALTH_TARGETS)
            return _join(out, not_measured("campaign_health"))
        cores = json.loads(files[0].read_text()).get("cores") or os.cpu_count() or "?"
        out += [
            f"Target (issue 17): {CAMPAIGN_HEALTH_TARGET}; the report prints per-instance sent counts, pauses, "
            "slow-downs and completion time.",
            "",
            "A tenant's campaign through the API (a contact list uploaded as CSV, a campaign over every instance, "
            "round robin, the send delay of the figures below, started), sent by one connection worker through "
            "the simulator, with "
            "Celery's beat running `campaigns.tick`. The driver watches the share of recipients the simulator "
            "has accepted and, at the marks, unpairs the first instance (4401, logged out), bans the second "
            "(a `close` fault with 4402 for every session, so it stays banned) and nacks one send in N of the "
            "third with a rate-limit error. A stopped instance's unsent share (never written, or only refused by "
            "transient nacks) moves to the connected ones "
            "(`campaigns/reroute.py`) once it has been down `BLAST_CAMPAIGN_REROUTE_AFTER_S`; what it had "
            "written without an answer fails with `instance_stopped` `BLAST_CAMPAIGN_STRANDED_FAIL_H` after it stopped "
            "(both set low for the run: see the platform settings row). Completion runs from the campaign's "
            "`started_at` to its `completed_at`. Exactly once is checked against the simulator's deliveries "
            "(`instance:client id`, deduplicated per instance only, so a message sent through two instances "
            "counts twice): missing counts recipients with neither a delivery nor a failed message with a "
            "reason. Slow-downs and restriction pauses are the instances' `slowed` and `restricted` events "
            "(`instances/restrictions.py`); down time runs from a `disconnect` to the next `ready`. Every "
            f"process runs on this one machine and shares its {cores} cores.",
            "",
        ]
        for path in files:
            data = json.loads(path.read_text())
            name = f"campaign health ({path.stem})" if len(files) > 1 else "campaign health"
            if len(files) > 1:
                out += [f"### `{path.name}`", ""]
            full = (data.get("recipients") or 0) >= 10_000 and (data.get("instances") or 0) >= 4
            size = f"{fmt(data.get('recipients'))} recipients over {fmt(data.get('instances'))} instances"
            # The settings a variant changed beyond the two every run sets low.
            changed = {k: v for k, v in (data.get("platform_env") or {}).items() if k not in CAMPAIGN_HEALTH_SET}
            if changed:
                size += ", with " + ", ".join(f"`{k}={v}`" for k, v in changed.items())
            held = all(target.met(data.get(key)) for key, target in CAMPAIGN_HEALTH_TARGETS.items())
            verdict = "met" if held and full else ("missed" if full else "smaller than the target's size")
            self.verdicts.append((name, "scenario", CAMPAIGN_HEALTH_TARGET, size, verdict))
            self.judge(name, data, CAMPAIGN_HEALTH_TARGETS)
            for key in CAMPAIGN_HEALTH_REPORTED:
                self.verdicts.append(
                    (name, label(key), "reported (issue 17 names no bound)", fmt(data.get(key)), "reported")
                )
            skip = {"per_instance", "timeline"}
            out += [*_block(meta_block(data)), figures_table(data, CAMPAIGN_HEALTH_TARGETS, skip=skip), ""]
            rows = data.get("per_instance") or []
            if rows:
                out += [
                    "Per instance (sent, failed and moved from the campaign report; accepted and nacked at the "
                    "simulator; down time, slow-downs and pauses from the instance's events):",
                    "",
                    table(
                        list(CAMPAIGN_HEALTH_COLUMNS.values()),
                        [[fmt(row.get(key)) for key in CAMPAIGN_HEALTH_COLUMNS] for row in rows],
                    ),
                    "",
                ]
            timeline = data.get("timeline") or []
            if timeline:
                lines = [f"{entry['at_s']:8.1f} s  {entry['event']}" for entry in timeline]
                out += [
                    "What the driver saw and did, in seconds after the start:",
                    "",
                    code("\n".join(lines), "text"),
                    "",
                ]
        return _join(out)

    def health(self) -> str:
        out = ["## Health: `GET /health` latency under load", ""]
        data = self.load("health-latency.json")
        if data is None:
            return _join(out, not_measured("health"))
        out += [
            "Concurrent clients send `GET /health` back to back, first while the worker holds every session "
            "(steady), then from the moment the gateway drops every session until all are connected again "
            "(restart). An error is an answer other than 200 with a health body counting every instance.",
            "",
            *_block(meta_block(data)),
            render_generic(data),
        ]
        return _join(out)

    def baseline(self) -> str:
        out = ["## Baseline comparison", ""]
        data = self.load("baseline.json")
        if data is None:
            return _join(out, not_measured("baseline"))
        out += [*_block(meta_block(data)), render_generic(data)]
        return _join(out)

    def outages(self) -> str:
        out = ["## Gateway outages", ""]
        baseline = self.load("baseline.json")
        connections = self.load("connections.json")
        cores = next(
            (d.get("cores") or d.get("parameters", {}).get("cores") for d in (baseline, connections) if d), None
        )
        out += [
            "A gateway that goes away for everyone is one event, not one failure per instance: the worker marks it "
            "down, its instances wait while one probe at a time asks whether it is back, and once it answers they "
            "reconnect in a ramp of at most `BLAST_GATEWAY_CONNECT_RATE` upgrades per second "
            "(`instances/outages.py`, `engine/outages.py`). Measured at the gateway simulator.",
            "",
            CPU_NOTE.format(cores=cores or os.cpu_count() or "?"),
            "",
            "### Blast beside a plain websockets reconnect loop",
            "",
        ]
        results = (baseline or {}).get("results") or {}
        if not any(scenario in results for scenario in OUTAGE_SCENARIOS):
            self.missing_targets("gateway outages (baseline)", BASELINE_OUTAGE_TARGETS)
            out += [not_measured("baseline")]
        else:
            assert baseline is not None
            out += [*_block(meta_block(baseline)), *self.outage_scenarios(baseline), ""]
        out += ["### One worker holding N sessions through an outage", ""]
        if connections is None or "outage_ready_99_percent_s" not in connections:
            self.missing_targets("gateway outage (connections)", OUTAGE_TARGETS)
            return _join(out, not_measured("connections"))
        figures = {k: v for k, v in connections.items() if is_outage_figure(k) and k not in OUTAGE_SERIES}
        sessions = connections.get("sessions_requested")
        out += [
            f"{fmt(sessions)} sessions held past the flap window; the gateway restarts (every session closed with "
            f"1001) and refuses every upgrade with 503 for {fmt(connections.get('outage_s'))} s, then answers "
            "again. Times are counted from the moment it answers again. Peak attempts per second: the upgrade "
            "requests the platform sent in one whole second (its ramp's own count, right before each request is "
            "written, cluster-wide); the gateway's peak is the simulator's count of the requests it read in one "
            "second, which a simulator stalled on the shared cores reads late, in the next second; the worker's "
            "peak counts its attempt events, written when an attempt is claimed.",
            "",
            *_block(meta_block(connections)),
            figures_table(figures, OUTAGE_TARGETS),
            "",
        ]
        self.judge("gateway outage (connections)", connections, OUTAGE_TARGETS)
        for series, what in OUTAGE_SERIES.items():
            per_second = connections.get(series) or {}
            if per_second:
                spread = " ".join(f"{s}s:{n}" for s, n in sorted(per_second.items(), key=lambda kv: int(kv[0])))
                out += [f"{what} after the gateway answered again (second: count):", "", code(spread), ""]
        timeline = self.results / "connections-timeline.csv"
        if timeline.exists() and outage_points(timeline):
            plot_outage(timeline, connections, self.outage_plot)
            self.plotted.append(self.outage_plot)
            link = os.path.relpath(self.outage_plot, self.output.parent)
            out += [
                f"Sessions ready over the outage and after it (`{_shown(timeline)}`, phase `outage`):",
                "",
                f"![Sessions ready after a gateway outage]({link})",
                "",
            ]
        return _join(out)

    def outage_scenarios(self, data: dict[str, Any]) -> list[str]:
        """The scenarios x sides table of bench/baseline.py, and the verdicts of Blast's side."""
        results = data["results"]
        parameters = data.get("parameters") or {}
        rows = []
        for scenario, sides in results.items():
            for side, r in sides.items():
                alerts = r.get("alerts")
                rows.append(
                    [
                        scenario,
                        SCENARIO_FAULTS.get(scenario, "-"),
                        side,
                        fmt(r.get("window_s")),
                        f"{fmt(r.get('attempts_per_instance_mean'))} / {fmt(r.get('attempts_per_instance_max'))}",
                        fmt(r.get("attempts_counted_by", "simulator")),
                        f"{fmt(r.get('peak_attempts_per_s'))} / {fmt(r.get('peak_attempts_per_s_after'))}",
                        fmt(r.get("recovery_s")),
                        "-" if "gateway_downs" not in r else f"{r['gateway_downs']} / {r['gateway_ups']}",
                        "-" if alerts is None else fmt(alerts),
                        fmt(r.get("breakers_open_at_end")),
                    ]
                )
        header = [
            "scenario",
            "fault",
            "side",
            "window (s)",
            "attempts per instance in the window (mean / max)",
            "counted by",
            "peak attempts per second (window / after)",
            "all ready after the window (s)",
            "gateway down / up",
            "alerts raised",
            "breakers open at the end",
        ]
        instances = parameters.get("instances_per_side")
        lines = [
            f"{fmt(instances)} instances a side and scenario, every scenario at the same time, each side against "
            'a simulator of its own. The window is the fault\'s duration; "all ready" counts from its end (for '
            "`refused`, from the moment the new simulator process answers). During `refused` no simulator "
            "listens: the attempts are the clients' own counts (Blast: its worker's attempt events; the loop: a "
            "counter around the library's `process_exception`).",
            "",
            table(header, rows),
        ]
        for scenario in OUTAGE_SCENARIOS:
            blast, other = results.get(scenario, {}).get("blast"), results.get(scenario, {}).get("websockets")
            if blast is None:
                continue
            for key, target in BASELINE_OUTAGE_TARGETS.items():
                value = blast.get(key)
                verdict = "not measured" if value is None else ("met" if target.met(value) else "missed")
                self.verdicts.append((f"gateway outage ({scenario})", label(key), target.text, fmt(value), verdict))
            if other is not None:
                ahead = (
                    isinstance(blast.get("recovery_s"), int | float)
                    and (other.get("recovery_s") is None or blast["recovery_s"] < other["recovery_s"])
                    and blast["attempts_per_instance_mean"] < other["attempts_per_instance_mean"]
                )
                measured = (
                    f"ready after {fmt(blast.get('recovery_s'))} s vs {fmt(other.get('recovery_s'))} s, "
                    f"{fmt(blast.get('attempts_per_instance_mean'))} vs "
                    f"{fmt(other.get('attempts_per_instance_mean'))} attempts per instance"
                )
                self.verdicts.append(
                    (
                        f"gateway outage ({scenario})",
                        "against the websockets loop",
                        "fewer attempts and all ready sooner",
                        measured,
                        "met" if ahead else "missed",
                    )
                )
        flapping = results.get("flapping", {}).get("blast")
        if flapping is not None:
            value = flapping.get("attempts_per_instance_mean")
            window = f" in {fmt(flapping.get('window_s'))} s"
            verdict = "met" if FLAPPING_TARGET.met(value) and flapping.get("window_s", 0) >= 590 else "missed"
            self.verdicts.append(
                ("flapping (baseline)", "attempts per instance", FLAPPING_TARGET.text, fmt(value) + window, verdict)
            )
        return lines

    def chaos(self) -> str:
        out = ["## Chaos soak", ""]
        path = self.results / "chaos-soak.txt"
        if not path.exists():
            self.verdicts.append(("chaos soak", "invariants", CHAOS_TARGET, "-", "not measured yet"))
            return _join(out, not_measured("chaos"))
        text = path.read_text()
        lines = text.splitlines()
        command = lines[0][1:].strip() if lines and lines[0].startswith("$") else None
        output = "\n".join(lines[1:] if command else lines).strip("\n")
        soak = parse_chaos(output)
        measured = f"{soak['instances']} instances, {soak['minutes']} min; {soak['summary']}"
        self.verdicts.append(("chaos soak", "invariants", CHAOS_TARGET, measured, "met" if soak["met"] else "missed"))
        if command:
            out += ["Command:", "", code(command), ""]
        out += [f"Target: {CHAOS_TARGET}. This run: {measured}.", "", code(output, "text"), ""]
        return _join(out)

    # -- helpers ----------------------------------------------------------------

    def scaleout(self) -> str:
        out = ["## Scale-out: shares over workers, joins and leaves", ""]
        data = self.load("scaleout.json")
        if data is None:
            self.missing_targets("scale-out", SCALEOUT_TARGETS)
            return _join(out, not_measured("scaleout"))
        self.judge("scale-out", data, SCALEOUT_TARGETS)
        kill_bound = data.get("kill9_bound_s")
        if kill_bound is not None:
            target = Target(f"<= {fmt(kill_bound)} s, the lease TTL plus one recovery period", _at_most(kill_bound))
            self.judge("scale-out", data, {"kill9_all_connected_s": target})
        out += [
            "Connection workers on one PostgreSQL database and one Redis hold the instances placed on them "
            "(rendezvous hashing with bounded loads, `instances/placement.py`); a worker joins, one is stopped "
            "with SIGTERM, one killed with `kill -9`. Moves are sessions closed with `handoff` by their old owner; "
            "a gap runs from that close to the new session's `ready`. " + CPU_NOTE.format(cores=data.get("cores")),
            "",
            *_block(meta_block(data)),
            figures_table(data, SCALEOUT_TARGETS),
            "",
        ]
        return _join(out)

    def runs(self, stem: str) -> list[Path]:
        """The published run, ``<stem>.json``, first; then its variants (``<stem>-<variant>.json``)."""
        return sorted(self.results.glob(f"{stem}*.json"), key=lambda path: (path.name != f"{stem}.json", path.name))

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.results / name
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def judge(self, benchmark: str, data: dict[str, Any], targets: dict[str, Target]) -> None:
        for key, target in targets.items():
            value = data.get(key)
            verdict = "not measured" if value is None else ("met" if target.met(value) else "missed")
            self.verdicts.append((benchmark, label(key), target.text, fmt(value), verdict))

    def missing_targets(self, benchmark: str, targets: dict[str, Target]) -> None:
        for key, target in targets.items():
            self.verdicts.append((benchmark, label(key), target.text, "-", "not measured yet"))


# -- rendering ----------------------------------------------------------------------

# What each scenario of bench/baseline.py does to the gateway, in a table cell.
SCENARIO_FAULTS = {
    "outage": "sessions closed (1001), upgrades refused with 503",
    "refused": "process killed (1006), TCP refused; a new process after",
    "timeout": "sessions closed (1001), upgrades never answered",
    "flapping": "every session closed with 1011 at `ready`",
}


def is_outage_figure(key: str) -> bool:
    """A figure of the outage phase of bench/connections.py."""
    return key.startswith("outage_") or key == "gateway_connect_rate_per_s"


def not_measured(step: str) -> str:
    return "\n".join(
        [
            f"Not measured yet. `make bench BENCH={step}` produces it, that is:",
            "",
            code(COMMANDS[step]),
            "",
        ]
    )


def meta_block(data: dict[str, Any]) -> str:
    out = []
    if data.get("command"):
        out += ["Command:", "", code(str(data["command"])), ""]
    facts = []
    if data.get("measured_at"):
        facts.append(f"measured {data['measured_at']}")
    if data.get("commit"):
        commit, _, note = str(data["commit"]).partition(" ")
        facts.append(f"at commit `{commit}`" + (f" {note}" if note else ""))
    if facts:
        sentence = ", ".join(facts)
        out += [sentence[0].upper() + sentence[1:] + ".", ""]
    if data.get("exit_status"):
        out += [f"**The run exited with status {data['exit_status']}**: read its figures with care.", ""]
    return "\n".join(out).rstrip()


def figures_table(data: dict[str, Any], targets: dict[str, Target], skip: set[str] | None = None) -> str:
    """The figures as rows; with a target column when any figure has one."""
    skip = set(META) | (skip or set())
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        target = targets.get(key)
        row = [label(key), fmt(value)]
        if targets:
            row += [target.text, "met" if target.met(value) else "**missed**"] if target else ["", ""]
        rows.append(row)
    return table(["figure", "value", "target", ""] if targets else ["figure", "value"], rows)


def render_generic(data: dict[str, Any], heading: str = "###") -> str:
    """Any JSON object as tables: its flat figures in one, nested groups in their own."""
    flat = {k: v for k, v in data.items() if k not in META and is_flat(v, 4)}
    nested = {k: v for k, v in data.items() if k not in META and not is_flat(v, 4)}
    out = []
    if flat:
        out += [table(["figure", "value"], [[label(k), fmt(v)] for k, v in flat.items()]), ""]
    for key, value in nested.items():
        out += [f"{heading} {label(key)}", ""]
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            if all(all(is_flat(x) for x in v.values()) for v in value.values()):
                out += [side_by_side(value), ""]
            else:
                out += [render_generic(value, heading + "#")]
        elif isinstance(value, dict):
            out += [render_generic(value, heading + "#")]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            out += [table([label(c) for c in columns], [[fmt(row.get(c)) for c in columns] for row in value]), ""]
        else:
            out += [code(json.dumps(value, indent=2)), ""]
    return "\n".join(out)


def side_by_side(groups: dict[str, dict[str, Any]]) -> str:
    """Groups of figures as columns, one row per figure."""
    names = list(dict.fromkeys(k for group in groups.values() for k in group))
    return table(["figure", *groups], [[label(n), *(fmt(g.get(n)) for g in groups.values())] for n in names])


def is_flat(value: Any, most: int = 12) -> bool:
    """Fits in one table cell: a scalar, or a list or mapping of at most ``most`` scalars."""
    if isinstance(value, dict):
        return len(value) <= most and all(not isinstance(v, dict | list) for v in value.values())
    if isinstance(value, list):
        return len(value) <= most and all(not isinstance(v, dict | list) for v in value)
    return True


# Unit suffixes of the figures' keys, as the table shows them.
UNITS = (("_per_s", " per second"), ("_percent", " (%)"), ("_kib", " (KiB)"), ("_mib", " (MiB)"), ("_ms", " (ms)"))
ACRONYMS = {
    "rss": "RSS",
    "cpu": "CPU",
    "api": "API",
    "kib": "KiB",
    "mib": "MiB",
    "postgresql": "PostgreSQL",
    "celery": "Celery",
}


def label(key: str) -> str:
    """A figure's key as words: ``worker_rss_per_session_kib`` -> ``worker RSS per session (KiB)``."""
    text, unit = str(key), ""
    if text.isupper():  # a setting's or a constant's name: shown as it is spelled
        return f"`{text}`"
    for suffix, shown in UNITS:
        if text.endswith(suffix):
            text, unit = text.removesuffix(suffix), shown
            break
    else:
        if text.endswith("_s"):
            text, unit = text.removesuffix("_s"), " (s)"
    return " ".join(ACRONYMS.get(word, word) for word in text.split("_")) + unit


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        # Thousands separators from five digits on: a close code stays 1011.
        return f"{value:,}" if abs(value) >= 10_000 else f"{value}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def code(text: str, language: str = "") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{language}\n{text}\n{fence}"


def _block(text: str) -> list[str]:
    """``text`` and a blank line after it; nothing when it is empty."""
    return [text, ""] if text else []


def _join(parts: list[str], *more: str) -> str:
    return "\n".join([*parts, *more]).rstrip() + "\n"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# -- the chaos soak's output ------------------------------------------------------------


def parse_chaos(output: str) -> dict[str, Any]:
    """Size, invariant lines and verdict of a chaos soak's printed output."""
    header = re.search(r"chaos soak \S+: (\d+) instances, ([\d.]+) min", output)
    instances = int(header.group(1)) if header else 0
    minutes = float(header.group(2)) if header else 0.0
    results = [line.split(None, 1) for line in output.splitlines() if line.startswith(("PASS ", "FAIL "))]
    passed = sum(1 for verdict, _ in results if verdict == "PASS")
    holds = "all invariants hold" in output and passed == len(results) > 0
    summary = f"{passed} of {len(results)} invariants pass" if results else "no invariant checked (incomplete run?)"
    return {
        "instances": instances,
        "minutes": f"{minutes:g}",
        "summary": summary,
        "met": holds and instances >= 1000 and minutes >= 30,
    }


# -- the plot ---------------------------------------------------------------------------------


def plot_restart(timeline: Path, data: dict[str, Any], out: Path) -> None:
    """Sessions ready over time after the restart, with the attempts per second behind them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with timeline.open() as handle:
        points = [
            (float(row["seconds"]), int(row["connected"]))
            for row in csv.DictReader(handle)
            if row.get("phase", "restart") == "restart"  # a timeline without phases is the restart's
        ]
    total = int(data.get("sessions_requested") or max((c for _, c in points), default=0))
    per_second = {int(s): int(n) for s, n in (data.get("attempts_per_second") or {}).items()}

    fig, ready = plt.subplots(figsize=(9, 4.5), dpi=100)
    if per_second:
        attempts = ready.twinx()
        attempts.bar(
            list(per_second),
            list(per_second.values()),
            width=0.9,
            align="edge",
            color="#d0d7e5",
            label="connection attempts per second",
        )
        attempts.set_ylabel("connection attempts per second")
        ready.set_zorder(attempts.get_zorder() + 1)
        ready.patch.set_visible(False)
    ready.plot([t for t, _ in points], [c for _, c in points], color="#1f4e9c", linewidth=2, label="sessions ready")
    if total:
        ready.axhline(0.99 * total, color="#888888", linestyle=":", linewidth=1, label="99 % of sessions")
    ready.axvline(45, color="#c0392b", linestyle="--", linewidth=1, label="target: 99 % within 45 s")
    ready_99 = data.get("restart_ready_99_percent_s")
    if isinstance(ready_99, int | float):
        ready.axvline(ready_99, color="#1f4e9c", linestyle=":", linewidth=1, label=f"99 % ready at {ready_99:g} s")
    ready.set_xlabel("seconds after the gateway restart")
    ready.set_ylabel("sessions ready (connected)")
    ready.set_ylim(0, max(total, 1) * 1.05)
    ready.set_xlim(0, max([t for t, _ in points] + [50]))
    ready.set_title(f"Sessions ready after a gateway restart ({total:,} sessions, one worker)")
    ready.grid(True, alpha=0.3)
    handles, labels = ready.get_legend_handles_labels()
    if per_second:
        more_handles, more_labels = attempts.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ready.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def outage_points(timeline: Path) -> list[tuple[float, int, int | None]]:
    """The outage phase of a connections timeline: (s since the gateway answered again, connected, attempts)."""
    with timeline.open() as handle:
        return [
            (
                float(row["seconds"]),
                int(row["connected"]),
                int(row["simulator_attempts"]) if row["simulator_attempts"] else None,
            )
            for row in csv.DictReader(handle)
            if row.get("phase") == "outage"
        ]


def plot_outage(timeline: Path, data: dict[str, Any], out: Path) -> None:
    """Sessions ready through a gateway outage and after it, with the attempts per second behind them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = outage_points(timeline)
    total = int(data.get("sessions_requested") or max((c for _, c, _ in points), default=0))
    per_second = {int(s): int(n) for s, n in (data.get("outage_attempts_per_second") or {}).items()}
    rate = data.get("gateway_connect_rate_per_s")
    away = float(data.get("outage_s") or -min((t for t, _, _ in points), default=0.0))

    fig, ready = plt.subplots(figsize=(9, 4.5), dpi=100)
    attempts = ready.twinx()
    attempts.bar(
        list(per_second),
        list(per_second.values()),
        width=0.9,
        align="edge",
        color="#d0d7e5",
        label="connection attempts per second (worker)",
    )
    if isinstance(rate, int | float):
        attempts.axhline(rate, color="#7f8c8d", linestyle="-.", linewidth=1, label=f"connect rate {rate:g} per second")
        attempts.set_ylim(0, max([rate, *per_second.values()]) * 1.6)
    attempts.set_ylabel("connection attempts per second")
    ready.set_zorder(attempts.get_zorder() + 1)
    ready.patch.set_visible(False)
    ready.axvspan(-away, 0, color="#f5b7b1", alpha=0.35, label=f"gateway away (503), {away:g} s")
    ready.plot(
        [t for t, _, _ in points], [c for _, c, _ in points], color="#1f4e9c", linewidth=2, label="sessions ready"
    )
    if total:
        ready.axhline(0.99 * total, color="#888888", linestyle=":", linewidth=1, label="99 % of sessions")
    ready.axvline(60, color="#c0392b", linestyle="--", linewidth=1, label="target: 99 % within 60 s")
    up = data.get("outage_up_after_back_s")
    if isinstance(up, int | float):
        ready.axvline(up, color="#27ae60", linestyle="-", linewidth=1, label=f"probe answered at {up:g} s")
    ready_99 = data.get("outage_ready_99_percent_s")
    if isinstance(ready_99, int | float):
        ready.axvline(ready_99, color="#1f4e9c", linestyle=":", linewidth=1, label=f"99 % ready at {ready_99:g} s")
    ready.set_xlabel("seconds after the gateway answered again")
    ready.set_ylabel("sessions ready (connected)")
    ready.set_ylim(0, max(total, 1) * 1.05)
    ready.set_xlim(-away - 2, max([t for t, _, _ in points] + [65]))
    ready.set_title(f"Sessions ready through a gateway outage ({total:,} sessions, one worker)")
    ready.grid(True, alpha=0.3)
    handles, labels = ready.get_legend_handles_labels()
    more_handles, more_labels = attempts.get_legend_handles_labels()
    ready.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        frameon=False,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


# -- the machine ------------------------------------------------------------------------------


def machine_facts() -> list[tuple[str, str]]:
    return [
        ("CPU", _cpu_model()),
        ("cores", str(os.cpu_count() or "?")),
        ("memory", _memory()),
        ("OS", f"{_os_name()}, kernel {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("PostgreSQL", _postgres_version()),
        ("Redis", _redis_version()),
        ("git commit", _git_commit()),
        ("generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _postgres_version() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"
    except Exception as exc:  # any failure is a fact for the page, not a reason to stop
        return f"not reachable ({type(exc).__name__})"


def _redis_version() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        info = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).info("server")
        return str(info.get("redis_version", "unknown"))
    except Exception as exc:  # as above
        return f"not reachable ({type(exc).__name__})"


def _git_commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h %s")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"`{commit.split(' ', 1)[0]}` {commit.split(' ', 1)[-1]}" + (" (tracked files modified)" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
