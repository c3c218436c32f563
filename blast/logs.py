"""Logging filters shared by every process."""

from __future__ import annotations

import logging
import re

# access_token=..., token=..., key=... in query strings and Bearer credentials.
_SECRET_PATTERNS = [
    re.compile(r"(?i)((?:access_token|token|api_key|key)=)[^&\s\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
]


def redact(text: str) -> str:
    """Return ``text`` with query-string tokens and bearer credentials masked."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in the final message of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def _redacting_access_log() -> type:
    from daphne.access import AccessLogGenerator

    class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
        """Daphne's access log writes request lines straight to its stream,
        past Python logging: redact them here."""

        def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):  # type: ignore[no-untyped-def]
            super().write_entry(host, date, redact(request), status, length, ident, user)

    return RedactingAccessLog
