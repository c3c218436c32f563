"""Signatures of alert webhook bodies (HMAC-SHA256), pure.

The sender puts the Unix time in ``X-Blast-Timestamp`` and
``sha256=<hex>`` in ``X-Blast-Signature``, where ``<hex>`` is the
HMAC-SHA256, keyed with the webhook's secret, of the bytes
``<timestamp>.<body>``. Signing the timestamp with the body stops a replay
of an old body with a fresh timestamp; a receiver checks both (docs/OPERATIONS.md shows how).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Blast-Signature"
TIMESTAMP_HEADER = "X-Blast-Timestamp"
PREFIX = "sha256="


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Blast-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}
