"""Why a session ended, and what kind of reaction that calls for.

PROTOCOL.md sections 1, 3, 4 and 5 name every way a gateway session can
fail. This module turns each of them (an HTTP status refusing the upgrade, a
close code, a network error, a lost keepalive, too many malformed frames)
into a :class:`Reason`, and each reason into a :class:`Kind` that the retry
policy and the circuit breaker act on. It is pure: no sockets, no clock.
"""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    """How the platform reacts to a reason."""

    TRANSIENT = "transient"  # retry after a delay; counts as a failure
    RESTART = "restart"  # reconnect at once; not a failure
    REPAIR = "repair"  # forget the pairing, reconnect for a new QR
    LONG_PAUSE = "long_pause"  # stop sending, retry after the ban pause
    TERMINAL = "terminal"  # stop; a person must act
    CLEAN = "clean"  # the platform itself ended the session on purpose


class Reason(enum.StrEnum):
    # transient
    CONNECTION_CLOSED = "connection_closed"
    CONNECTION_LOST = "connection_lost"
    TIMED_OUT = "timed_out"
    UNAVAILABLE = "unavailable"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    PROTOCOL_ERROR = "protocol_error"
    # restart / re-pair / long pause
    RESTART_REQUIRED = "restart_required"
    BAD_SESSION = "bad_session"
    TEMPORARILY_BANNED = "temporarily_banned"
    # terminal
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CLIENT_OUTDATED = "client_outdated"
    LOGGED_OUT = "logged_out"
    FORBIDDEN = "forbidden"
    MULTIDEVICE_MISMATCH = "multidevice_mismatch"
    REPLACED = "replaced"
    # ended by the platform on purpose (disconnect, lost lease, shutdown)
    STOPPED = "stopped"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


KINDS: dict[Reason, Kind] = {
    Reason.CONNECTION_CLOSED: Kind.TRANSIENT,
    Reason.CONNECTION_LOST: Kind.TRANSIENT,
    Reason.TIMED_OUT: Kind.TRANSIENT,
    Reason.UNAVAILABLE: Kind.TRANSIENT,
    Reason.UNREACHABLE: Kind.TRANSIENT,
    Reason.RATE_LIMITED: Kind.TRANSIENT,
    Reason.PROTOCOL_ERROR: Kind.TRANSIENT,
    Reason.RESTART_REQUIRED: Kind.RESTART,
    Reason.BAD_SESSION: Kind.REPAIR,
    Reason.TEMPORARILY_BANNED: Kind.LONG_PAUSE,
    Reason.UNAUTHORIZED: Kind.TERMINAL,
    Reason.NOT_FOUND: Kind.TERMINAL,
    Reason.CLIENT_OUTDATED: Kind.TERMINAL,
    Reason.LOGGED_OUT: Kind.TERMINAL,
    Reason.FORBIDDEN: Kind.TERMINAL,
    Reason.MULTIDEVICE_MISMATCH: Kind.TERMINAL,
    Reason.REPLACED: Kind.TERMINAL,
    Reason.STOPPED: Kind.CLEAN,
    Reason.LEASE_LOST: Kind.CLEAN,
    Reason.SHUTDOWN: Kind.CLEAN,
}

# PROTOCOL.md section 4. 1006 is never sent on the wire; websockets reports it
# when the TCP connection ended without a close frame.
CLOSE_CODES: dict[int, Reason] = {
    1000: Reason.CONNECTION_CLOSED,
    1001: Reason.CONNECTION_CLOSED,
    1002: Reason.PROTOCOL_ERROR,
    1006: Reason.CONNECTION_LOST,
    1011: Reason.UNAVAILABLE,
    1012: Reason.UNAVAILABLE,
    1013: Reason.UNAVAILABLE,
    4408: Reason.TIMED_OUT,
    4428: Reason.CONNECTION_CLOSED,
    4503: Reason.UNAVAILABLE,
    4515: Reason.RESTART_REQUIRED,
    4500: Reason.BAD_SESSION,
    4402: Reason.TEMPORARILY_BANNED,
    4405: Reason.CLIENT_OUTDATED,
    4401: Reason.LOGGED_OUT,
    4403: Reason.FORBIDDEN,
    4411: Reason.MULTIDEVICE_MISMATCH,
    4440: Reason.REPLACED,
}

# The close code the gateway uses for each reason it can send (the inverse of
# CLOSE_CODES for the 44xx/45xx rows); the simulator closes with these.
GATEWAY_CLOSE_CODES: dict[Reason, int] = {
    Reason.TIMED_OUT: 4408,
    Reason.CONNECTION_CLOSED: 4428,
    Reason.UNAVAILABLE: 4503,
    Reason.RESTART_REQUIRED: 4515,
    Reason.BAD_SESSION: 4500,
    Reason.TEMPORARILY_BANNED: 4402,
    Reason.CLIENT_OUTDATED: 4405,
    Reason.LOGGED_OUT: 4401,
    Reason.FORBIDDEN: 4403,
    Reason.MULTIDEVICE_MISMATCH: 4411,
    Reason.REPLACED: 4440,
}


def kind_of(reason: Reason) -> Kind:
    return KINDS[reason]


def is_terminal(reason: Reason) -> bool:
    return KINDS[reason] is Kind.TERMINAL


def from_close_code(code: int | None) -> Reason:
    """The reason for a close code received from the gateway (section 4).

    ``None`` means no close frame arrived (1006). Any other code in 4000-4999
    is transient, and so is any code the protocol does not name.
    """
    if code is None:
        return Reason.CONNECTION_LOST
    known = CLOSE_CODES.get(code)
    if known is not None:
        return known
    if 4000 <= code <= 4999:
        return Reason.CONNECTION_CLOSED
    if code == 1005:  # closed without a status code
        return Reason.CONNECTION_CLOSED
    return Reason.CONNECTION_LOST if code == 1006 else Reason.CONNECTION_CLOSED


def from_http_status(status: int) -> Reason:
    """The reason for an HTTP status that refused the upgrade (section 1)."""
    if status in (401, 403):
        return Reason.UNAUTHORIZED
    if status == 404:
        return Reason.NOT_FOUND
    if status == 429:
        return Reason.RATE_LIMITED
    if status == 408:
        return Reason.TIMED_OUT
    if 500 <= status <= 599:
        return Reason.UNAVAILABLE
    # Any other refusal (400, 426, a redirect we do not follow, ...) is a
    # gateway we cannot talk to right now; keep retrying with the breaker as
    # the bound rather than stopping for good on an unexpected status.
    return Reason.UNAVAILABLE


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in delta-seconds form, or None."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds
