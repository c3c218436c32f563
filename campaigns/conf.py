"""The campaigns app's settings, with their defaults in one place.

Each is read from ``django.conf.settings`` (where ``blast/settings.py`` sets
it from the environment) and falls back to the default here, so the app runs
before the project's settings name them. Read them through :func:`get` at
call time, never at import time, so that tests can override them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Messages per tenant per calendar month (UTC); 0: unlimited.
    "BLAST_TENANT_MONTHLY_QUOTA": 0,
    # Most messages one POST /api/v1/messages/batch may hold.
    "BLAST_MESSAGE_BATCH_MAX": 1000,
    # Region used to read numbers written without a country code ("" : none,
    # such numbers are refused). An upload may name its own (?region=BR).
    "BLAST_DEFAULT_REGION": "",
    # CSV uploads: largest file and most data rows accepted in one upload, and
    # the most contacts a list may hold.
    "BLAST_CSV_MAX_BYTES": 10 * 1024 * 1024,
    "BLAST_CSV_MAX_ROWS": 100_000,
    # Longest line of an upload (bytes); a longer one refuses the file before
    # it is parsed. Also the most characters of one row whose value spans lines.
    "BLAST_CSV_MAX_LINE_BYTES": 64 * 1024,
    # A web process imports one upload at a time; another waits this long for
    # its turn, then is refused (429, Retry-After) without being read.
    "BLAST_CSV_IMPORT_WAIT_S": 10.0,
    "BLAST_CONTACT_LIST_MAX_CONTACTS": 1_000_000,
    # Expansion: contacts turned into messages per transaction, and chunks
    # per task run before the task re-queues itself.
    "BLAST_CAMPAIGN_CHUNK": 500,
    "BLAST_CAMPAIGN_CHUNKS_PER_TASK": 20,
    # The campaign beat job's period; an expansion with no progress for
    # STALL_S is dispatched again.
    "BLAST_CAMPAIGN_PERIOD_S": 5.0,
    "BLAST_CAMPAIGN_EXPANSION_STALL_S": 60.0,
    # A running campaign pauses by itself once none of its instances has
    # been connected for this long, and resumes when one connects.
    "BLAST_CAMPAIGN_PAUSE_GRACE_S": 15.0,
    # Allowed hours are enforced by the beat job: messages are held this long
    # before a window closes, so that a late tick never lets one out after.
    "BLAST_CAMPAIGN_WINDOW_GUARD_S": 30.0,
    # Inbound messages whose whole text (case, spaces and punctuation
    # ignored) is one of these opt the sender out, or back in.
    "BLAST_OPT_OUT_KEYWORDS": ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"],
    "BLAST_OPT_IN_KEYWORDS": ["START", "UNSTOP"],
    # Status webhooks: fan-out period, events per POST, attempts, backoff
    # (BASE * 2^(attempt-1), at most MAX), HTTP timeout, retention of
    # finished deliveries, and whether private addresses may be targets.
    "BLAST_WEBHOOK_PERIOD_S": 5.0,
    "BLAST_WEBHOOK_BATCH": 100,
    "BLAST_WEBHOOK_MAX_ATTEMPTS": 10,
    "BLAST_WEBHOOK_RETRY_BASE_S": 10.0,
    "BLAST_WEBHOOK_RETRY_MAX_S": 3600.0,
    "BLAST_WEBHOOK_TIMEOUT_S": 10.0,
    "BLAST_WEBHOOK_RETENTION_DAYS": 7.0,
    "BLAST_WEBHOOK_ALLOW_PRIVATE": False,
}


def get(name: str) -> Any:
    """The setting ``name``: the project's value, else the default here."""
    return getattr(settings, name, DEFAULTS[name])
