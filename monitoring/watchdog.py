"""The health monitor: an external watchdog for when the platform itself is
down (``manage.py health_monitor``, ``scripts/health-monitor.sh``).

It polls ``/health`` every interval, logs every check with one fixed marker
per kind of line, and posts an alert to the platform-wide webhooks on each
transition: the platform stops answering (``platform_down`` firing, after
``down_after`` failed checks in a row) or answers again (resolved), its
status becomes warn or fail (``platform_status`` firing, each change) or
pass again (resolved). The last reported state is kept in a small JSON
file, so a restarted monitor does not repeat an alert.

Log markers (logs/health-monitor.log)::

    ▶️  monitor started          💚 pass      💛 warn      💔 fail
    💀 no answer (down)          🔀 state changed (from -> to)
    📣 alert posted              📵 alert not delivered      🏁 monitor stopped

Alerts are recorded (``Alert`` and ``AlertDelivery`` rows) and delivered
inline, not through Celery, which may be what is down; a failed delivery is
retried on the next checks with the usual backoff. When even the database
does not answer, the monitor posts to the webhooks it read last, signed
the same way, unrecorded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.db import Error as DatabaseError
from django.db import close_old_connections, connection

from blast.logs import redact
from monitoring import alerts, delivery
from monitoring.models import AlertDelivery, AlertKind, AlertWebhook, DeliveryStatus
from monitoring.transitions import FIRING, RESOLVED

logger = logging.getLogger("blast.health_monitor")

MARK_START, MARK_STOP = "▶️", "🏁"
MARK_STATUS = {"pass": "💚", "warn": "💛", "fail": "💔"}
MARK_DOWN, MARK_CHANGE = "💀", "🔀"
MARK_ALERT, MARK_ALERT_FAILED = "📣", "📵"

DOWN = "down"
EXIT_CODES = {"pass": 0, "warn": 1, "fail": 2, DOWN: 3}


@dataclass(frozen=True)
class Probe:
    """What one check saw: a status (pass/warn/fail) or ``down``."""

    state: str
    http_status: int | None = None
    score: int | None = None
    detail: str = ""
    elapsed_ms: float = 0.0


def probe(url: str, timeout: float) -> Probe:
    """GET ``url`` and read the health response; never raises."""
    request = urllib.request.Request(url, headers={"Accept": "application/health+json, application/json"})
    started = time.perf_counter()
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                code, raw = response.status, response.read(65536)
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read(65536)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(DOWN, detail=f"{type(reason).__name__}: {reason}")
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in MARK_STATUS:
        return Probe(DOWN, code, detail=f"not a health response (HTTP {code})", elapsed_ms=elapsed)
    score = body.get("score")
    return Probe(
        str(body["status"]),
        code,
        score if isinstance(score, int) else None,
        str(body.get("output") or ""),
        elapsed,
    )


@dataclass
class Reported:
    """The state the monitor last reported (persisted between runs)."""

    down: bool = False
    status: str | None = None  # last answered status; None: never answered
    failures: int = 0  # consecutive checks without an answer

    @classmethod
    def load(cls, path: Path | None) -> Reported:
        if path is None or not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(bool(data.get("down")), data.get("status"), int(data.get("failures", 0)))
        except (ValueError, OSError, TypeError):
            return cls()

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)


@dataclass(frozen=True)
class Transition:
    kind: str
    status: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


def step(reported: Reported, seen: Probe, down_after: int) -> list[Transition]:
    """Update ``reported`` with one check; return the alerts it calls for.

    Pure: ``platform_down`` fires after ``down_after`` unanswered checks in a
    row and resolves at the first answer; ``platform_status`` fires when the
    answered status becomes warn or fail, or changes between them, and
    resolves when it is pass again. A first check that passes says nothing.
    """
    found: list[Transition] = []
    if seen.state == DOWN:
        reported.failures += 1
        if not reported.down and reported.failures >= down_after:
            reported.down = True
            found.append(
                Transition(
                    AlertKind.PLATFORM_DOWN,
                    FIRING,
                    f"the platform does not answer its health check: {seen.detail}",
                    {"detail": seen.detail, "failed_checks": reported.failures},
                )
            )
        return found
    reported.failures = 0
    data = {"status": seen.state, "score": seen.score, "http_status": seen.http_status, "output": seen.detail}
    if reported.down:
        reported.down = False
        found.append(Transition(AlertKind.PLATFORM_DOWN, RESOLVED, f"the platform answers again: {seen.state}", data))
    previous, reported.status = reported.status, seen.state
    if seen.state != previous:
        if seen.state == "pass":
            if previous in ("warn", "fail"):
                found.append(Transition(AlertKind.PLATFORM_STATUS, RESOLVED, "the platform passes again", data))
        else:
            found.append(
                Transition(
                    AlertKind.PLATFORM_STATUS,
                    FIRING,
                    f"platform health is {seen.state}" + (f": {seen.detail}" if seen.detail else ""),
                    {**data, "previous": previous},
                )
            )
    return found


@dataclass
class CachedWebhook:
    name: str
    url: str
    secret: str


class Monitor:
    """The monitor's loop: small named steps (probe, log, alert, retry)."""

    def __init__(
        self,
        url: str,
        *,
        interval: float,
        timeout: float,
        down_after: int = 2,
        state_file: Path | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.down_after = max(1, down_after)
        self.state_file = state_file
        self.reported = Reported.load(state_file)
        self.stop = threading.Event()
        self.webhooks: list[CachedWebhook] = []
        self.pending: set[int] = set()

    def run(self) -> None:
        logger.info(
            "%s monitor started: %s every %gs (timeout %gs, down after %d failed checks)",
            MARK_START,
            redact(self.url),
            self.interval,
            self.timeout,
            self.down_after,
        )
        try:
            while not self.stop.is_set():
                self.check()
                self.stop.wait(self.interval)
        finally:
            logger.info("%s monitor stopped", MARK_STOP)

    def check(self) -> Probe:
        """One check: probe, log, alert on a transition, retry old deliveries."""
        seen = probe(self.url, self.timeout)
        self.log(seen)
        before = (self.reported.down, self.reported.status)
        transitions = step(self.reported, seen, self.down_after)
        after = (self.reported.down, self.reported.status)
        if before != after:
            logger.warning("%s %s -> %s", MARK_CHANGE, self._label(*before), self._label(*after))
        self.reported.save(self.state_file)
        self.refresh_webhooks()
        for transition in transitions:
            self.alert(transition)
        self.retry_pending()
        return seen

    @staticmethod
    def _label(down: bool, status: str | None) -> str:
        return DOWN if down else status or "unknown"

    def log(self, seen: Probe) -> None:
        if seen.state == DOWN:
            logger.error(
                "%s down: %s (%d of %d failed checks before alerting)",
                MARK_DOWN,
                seen.detail,
                min(self.reported.failures + 1, self.down_after),
                self.down_after,
            )
            return
        line = (
            f"{MARK_STATUS[seen.state]} {seen.state} HTTP {seen.http_status} score={seen.score} ({seen.elapsed_ms:g}ms)"
        )
        if seen.detail:
            line += f": {seen.detail}"
        (logger.info if seen.state == "pass" else logger.warning)(line)

    # -- alerts ---------------------------------------------------------------------

    def refresh_webhooks(self) -> None:
        """Remember the platform-wide webhooks, for when the database is down."""
        try:
            close_old_connections()
            self.webhooks = [
                CachedWebhook(w.name, w.url, w.secret)
                for w in AlertWebhook.objects.filter(enabled=True, tenant__isnull=True)
            ]
        except DatabaseError:
            connection.close()

    def alert(self, transition: Transition) -> None:
        try:
            _alert, ids = alerts.raise_alert(transition.kind, transition.status, transition.summary, transition.data)
        except DatabaseError:
            connection.close()
            self.post_unrecorded(transition)
            return
        delivered = 0
        for delivery_id in ids:
            outcome = delivery.attempt(delivery_id)
            if outcome is not None and outcome.status == "delivered":
                delivered += 1
            else:
                self.pending.add(delivery_id)
        self._log_alert(transition, delivered, len(ids))

    def _log_alert(self, transition: Transition, delivered: int, total: int) -> None:
        if total == 0:
            logger.warning(
                "%s alert %s %s: no platform-wide webhook is configured",
                MARK_ALERT_FAILED,
                transition.kind,
                transition.status,
            )
        elif delivered == total:
            logger.warning(
                "%s alert %s %s posted to %d webhooks: %s",
                MARK_ALERT,
                transition.kind,
                transition.status,
                delivered,
                transition.summary,
            )
        else:
            logger.error(
                "%s alert %s %s delivered to %d of %d webhooks; retrying the rest",
                MARK_ALERT_FAILED,
                transition.kind,
                transition.status,
                delivered,
                total,
            )

    def post_unrecorded(self, transition: Transition) -> None:
        """The database is down: post to the webhooks read last, unrecorded."""
        body = json.dumps(
            {
                "id": None,
                "kind": transition.kind,
                "status": transition.status,
                "severity": alerts.severity_of(transition.kind, transition.status),
                "summary": transition.summary,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "tenant": None,
                "instance": None,
                "data": {**transition.data, "unrecorded": True},
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        delivered = 0
        for webhook in self.webhooks:
            response = delivery.post(webhook.url, webhook.secret, body, {}, self.timeout)
            delivered += 1 if response.ok else 0
        self._log_alert(transition, delivered, len(self.webhooks))

    def retry_pending(self) -> None:
        for delivery_id in sorted(self.pending):
            try:
                outcome = delivery.attempt(delivery_id)
            except DatabaseError:
                connection.close()
                return
            if outcome is None:
                # Not due yet, or another sender (Celery's sweep) has it.
                status = AlertDelivery.objects.filter(id=delivery_id).values_list("status", flat=True).first()
                if status not in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
                    self.pending.discard(delivery_id)
            elif outcome.status in ("delivered", "failed"):
                self.pending.discard(delivery_id)
                mark = MARK_ALERT if outcome.status == "delivered" else MARK_ALERT_FAILED
                logger.warning(
                    "%s delivery %s %s after %d attempts", mark, delivery_id, outcome.status, outcome.attempts
                )
