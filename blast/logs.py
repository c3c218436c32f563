"""Logging filters shared by every process."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

REDACTED = "[redacted]"

# A percent escape, itself percent-encoded any number of times ("%6E",
# "%256E", "%25256E"): fully decoded, it is the one character of its last two
# hex digits.
_ESCAPE = re.compile(r"%(?:25)*([0-9A-Fa-f]{2})")

# Matched on the decoded text, so that an encoded name ("access_toke%6E=",
# "access_token%3D", a whole URL encoded into another parameter) is seen for
# what the server decodes it to. A parameter is secret when its name ends in
# "token" or "key" (access_token, token, api_key, key, ...).
_SECRETS = [
    re.compile(r"(?i)(?:token|key)[\s+]*=(?P<secret>[^&\s\"']+)"),
    re.compile(r"(?i)bearer[\s+]+(?P<secret>[A-Za-z0-9._~+/=-]+)"),
]


def redact(text: str) -> str:
    """Return ``text`` with query-string tokens and bearer credentials masked.

    Percent escapes, also doubled ones, are decoded before names are
    compared; the secret's raw text, escapes included, is replaced by
    ``[redacted]`` and everything else is kept as it was written.
    """
    decoded, starts = _decode(text)
    spans = sorted(match.span("secret") for pattern in _SECRETS for match in pattern.finditer(decoded))
    if not spans:
        return text
    pieces: list[str] = []
    kept_until = 0
    for start, end in spans:
        raw_start, raw_end = (starts[start], starts[end]) if starts is not None else (start, end)
        if raw_end <= kept_until:
            continue
        pieces.append(text[kept_until : max(raw_start, kept_until)])
        if raw_start >= kept_until:
            pieces.append(REDACTED)
        kept_until = raw_end
    pieces.append(text[kept_until:])
    return "".join(pieces)


def _decode(text: str) -> tuple[str, list[int] | None]:
    """``text`` with every percent escape fully decoded, and where each of its
    characters starts in ``text`` (one entry more: the end). ``None`` for the
    offsets when nothing was decoded: they are the same."""
    if "%" not in text:
        return text, None
    pieces: list[str] = []
    starts: list[int] = []
    position = 0
    for match in _ESCAPE.finditer(text):
        pieces.append(text[position : match.start()])
        starts.extend(range(position, match.start()))
        pieces.append(chr(int(match[1], 16)))
        starts.append(match.start())
        position = match.end()
    pieces.append(text[position:])
    starts.extend(range(position, len(text) + 1))
    return "".join(pieces), starts


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in the final message of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


# Beat's line for each job it sends (celery.beat). The worker's lines for each
# task it receives (celery.worker.strategy) and that returns (celery.app.trace)
# are Celery's LOG_RECEIVED and LOG_SUCCESS.
SENDING_DUE_TASK = "Scheduler: Sending due task %s (%s)"


def _beat_job_tasks() -> frozenset[str]:
    from instances.schedules import JOBS

    return frozenset(job.task for job in JOBS)


class PeriodicBookkeepingFilter(logging.Filter):
    """Lowers Celery's per-run bookkeeping lines of the beat jobs to DEBUG.

    Every few seconds each beat job costs three INFO lines (sent, received,
    succeeded) that say nothing happened; they would bury the lines that do.
    Attached to the ``celery.beat``, ``celery.worker.strategy`` and
    ``celery.app.trace`` loggers. Only those three INFO lines, and only for
    the registry's jobs (``instances.schedules``), are lowered: one-off tasks
    (webhook and alert deliveries, expansions) keep theirs, and failures,
    retries and warnings keep their level. A lowered line still shows when its
    logger is enabled for DEBUG (``--loglevel DEBUG``).
    """

    def __init__(self) -> None:
        super().__init__()
        # The registry is read on first use: this filter is built while
        # Django configures logging, before the apps are loaded.
        self._tasks: frozenset[str] | None = None

    @property
    def tasks(self) -> frozenset[str]:
        if self._tasks is None:
            self._tasks = _beat_job_tasks()
        return self._tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or bookkeeping_task(record) not in self.tasks:
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def bookkeeping_task(record: logging.LogRecord) -> str | None:
    """The task a Celery bookkeeping record is about, or ``None`` when the
    record is not one of those lines."""
    if record.msg == SENDING_DUE_TASK and isinstance(record.args, tuple) and len(record.args) == 2:
        return str(record.args[1])
    if record.msg in (LOG_RECEIVED, LOG_SUCCESS) and isinstance(record.args, Mapping):
        return str(record.args.get("name"))
    return None


def _redacting_access_log() -> type:
    from daphne.access import AccessLogGenerator

    class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
        """Daphne's access log writes request lines straight to its stream,
        past Python logging: redact them here."""

        def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):  # type: ignore[no-untyped-def]
            super().write_entry(host, date, redact(request), status, length, ident, user)

    return RedactingAccessLog
