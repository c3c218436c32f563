"""Logging filters shared by every process."""

from __future__ import annotations

import logging
import re

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


def _redacting_access_log() -> type:
    from daphne.access import AccessLogGenerator

    class RedactingAccessLog(AccessLogGenerator):  # type: ignore[misc]
        """Daphne's access log writes request lines straight to its stream,
        past Python logging: redact them here."""

        def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):  # type: ignore[no-untyped-def]
            super().write_entry(host, date, redact(request), status, length, ident, user)

    return RedactingAccessLog
