"""Signatures of alert webhook bodies (HMAC-SHA256), pure.

The sender puts the Unix time in ``X-Blast-Timestamp`` and
``sha256=<hex>`` in ``X-Blast-Signature``, where ``<hex>`` is the
HMAC-SHA256, keyed with the webhook's secret, of the bytes
``<timestamp>.<body>``. Signing the timestamp with the body stops a replay
of an old body with a fresh timestamp; a receiver checks both (see
:func:`verify` and docs/OPERATIONS.md).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Blast-Signature"
TIMESTAMP_HEADER = "X-Blast-Timestamp"
PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Blast-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str | None,
    signature_value: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when ``signature_value`` signs ``body`` at ``timestamp`` with
    ``secret`` and the timestamp is within ``tolerance_s`` of ``now``."""
    if not timestamp or not signature_value:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), signature_value)
