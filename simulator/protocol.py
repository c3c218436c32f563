"""What PROTOCOL.md fixes about the wire, as the simulator checks it.

Constants and pure predicates only: the subprotocol, version and optional
features announced,
the frame and text limits, the shapes of a message id and a phone number,
what a canonical instance key and a bearer token look like, and which close
codes may be sent. The close-code table itself is :mod:`simulator.codes`.
Nothing here does I/O or keeps state.
"""

from __future__ import annotations

import re
import uuid

SUBPROTOCOL = "blast-gateway.v1"
PROTOCOL_VERSION = 1
# The optional frames announced in `hello`'s `features` (sections 2.3, 2.4).
PAIR_CODE = "pair_code"
MEDIA = "media"
CHECK = "check"
PRESENCE = "presence"
V11_FEATURES = (MEDIA, CHECK, PRESENCE)
MEDIA_KINDS = frozenset({"image", "document", "audio", "video"})
MAX_CAPTION_CHARS = 1024
MAX_MEDIA_URL = 2048
MAX_MEDIA_BYTES = 100 * 1024 * 1024
MAX_CHECK_PHONES = 50
PRESENCE_STATES = frozenset({"composing", "paused"})
# A `send` holds at most 4096 characters of text; even fully \u-escaped that
# stays far below this, and anything bigger is not a gateway frame.
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096
# The "close" code that means: drop TCP without a close frame (the client sees 1006).
ABORT = 1006

MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
E164_RE = re.compile(r"\+[0-9]{8,15}")


def canonical_key(value: str) -> str | None:
    """``value`` if it is a UUID in canonical (lower-case, hyphenated) form, else None."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
    return value if str(parsed) == value else None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def media_problem(media: object, caption: object) -> str | None:
    """Why a v1.1 media ``send``'s ``media`` and ``caption`` are not valid
    (PROTOCOL.md section 2.4), or None."""
    if not isinstance(media, dict):
        return "media must be an object"
    kind, url, mime = media.get("kind"), media.get("url"), media.get("mime")
    filename, size = media.get("filename"), media.get("size")
    if kind not in MEDIA_KINDS:
        return "media.kind must be image, document, audio or video"
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > MAX_MEDIA_URL:
        return f"media.url must be an http:// or https:// URL of at most {MAX_MEDIA_URL} characters"
    if not isinstance(mime, str) or "/" not in mime or len(mime) > 100:
        return "media.mime must be a type/subtype of at most 100 characters"
    if not isinstance(filename, str) or not 1 <= len(filename) <= 255:
        return "media.filename must be 1-255 characters"
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_MEDIA_BYTES:
        return f"media.size must be an integer from 1 to {MAX_MEDIA_BYTES}"
    if caption is not None and (not isinstance(caption, str) or len(caption) > MAX_CAPTION_CHARS):
        return f"caption must be at most {MAX_CAPTION_CHARS} characters"
    return None
