"""Why a session ended, and what kind of reaction that calls for.

PROTOCOL.md sections 1, 3, 4 and 5 name every way a gateway session can
fail. This module turns each of them (an HTTP status refusing the upgrade, a
close code, a network error, a lost keepalive, too many malformed frames)
into a :class:`Reason`, and each reason into a :class:`Kind` that the retry
policy and the circuit breaker act on. It is pure: no sockets, no clock.
:func:`from_exception` only inspects exception objects; it never performs I/O.
"""

from __future__ import annotations

import enum

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
)


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
    HANDOFF = "handoff"  # moved to the worker that should hold it (scale-out)


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
    Reason.HANDOFF: Kind.CLEAN,
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


# Reasons that say "the gateway did not answer", whoever the instance is
# (instances.outages counts them toward a gateway's outage).
GATEWAY_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.UNREACHABLE,
        Reason.TIMED_OUT,
        Reason.UNAVAILABLE,
        Reason.CONNECTION_CLOSED,
        Reason.CONNECTION_LOST,
    }
)


def kind_of(reason: Reason) -> Kind:
    """The kind of reaction ``reason`` calls for."""
    return KINDS[reason]


def is_terminal(reason: Reason) -> bool:
    """True when ``reason`` means stop until a person acts (never retry)."""
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
    # Any other 4xxx code, 1005 (a close frame without a status code) and any
    # code the protocol does not name: the gateway closed on purpose, so retry.
    return Reason.CONNECTION_CLOSED


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


# Close codes the client itself fails a connection with when the gateway's
# input is bad: 1002 (more than the malformed-frame budget, or a frame that
# websockets rejects), 1007 (invalid UTF-8 in a text frame), 1009 (a frame
# over max_size). PROTOCOL.md section 5 calls all of these `protocol_error`.
CLIENT_PROTOCOL_FAILURE_CODES: frozenset[int] = frozenset({1002, 1007, 1009})


def from_exception(exc: BaseException) -> tuple[Reason, float | None]:
    """The reason a session failed, and the gateway's ``Retry-After`` (seconds).

    ``exc`` is what ``websockets.asyncio.client.connect`` (websockets 15), a
    receive, a send or the network raised. The second item is the
    ``Retry-After`` of a refused upgrade in delta-seconds form, else None.

    - ``InvalidStatus``: :func:`from_http_status` of the response's status.
    - ``ConnectionClosed``: :func:`from_close_code` of the close frame the
      gateway sent, or ``connection_lost`` when none arrived (1006, and a
      keepalive ping that timed out). When the client failed the connection
      itself for bad input (1002, 1007, 1009) before any close frame from the
      gateway, ``protocol_error``, whether or not the gateway echoed it.
    - websockets' ``ProtocolError`` and ``PayloadTooBig``: ``protocol_error``.
    - A proxy failure (``ProxyError``), an invalid gateway or proxy address
      (``InvalidURI``, ``InvalidProxy``): ``unreachable``.
    - ``InvalidMessage`` (no valid HTTP response, e.g. the gateway hung up
      during the upgrade): ``unavailable``.
    - Any other ``InvalidHandshake`` (a bad Upgrade header, a refused
      subprotocol, a security limit): ``protocol_error``.
    - ``TimeoutError`` (including the open timeout): ``timed_out``.
    - ``OSError`` (refused, DNS, TLS, reset, ...): ``unreachable``.
    - ``EOFError`` and anything else: ``connection_lost``.

    Every reason returned here is transient except those that
    :func:`from_http_status` and :func:`from_close_code` map otherwise.
    Cancellation is not classified specially: a caller that cancels a
    session knows why it did and should report ``stopped``/``shutdown``.
    """
    if isinstance(exc, InvalidStatus):
        response = exc.response
        # Headers.get() raises when the header is repeated; the first wins.
        values = response.headers.get_all("Retry-After")
        retry_after = parse_retry_after(values[0]) if values else None
        return from_http_status(response.status_code), retry_after
    if isinstance(exc, ConnectionClosed):
        return _from_connection_closed(exc), None
    if isinstance(exc, ProtocolError | PayloadTooBig):
        return Reason.PROTOCOL_ERROR, None
    if isinstance(exc, ProxyError | InvalidURI | InvalidProxy):
        # Retrying an invalid address is futile, but it is an operator's
        # configuration and the breaker bounds the retries; a terminal reason
        # would need a person to notice a typo that they can simply fix.
        return Reason.UNREACHABLE, None
    if isinstance(exc, InvalidMessage):
        return Reason.UNAVAILABLE, None
    if isinstance(exc, InvalidHandshake):
        return Reason.PROTOCOL_ERROR, None
    # TimeoutError is an OSError subclass (and asyncio.TimeoutError is the
    # same class since 3.11), so it must be tested first.
    if isinstance(exc, TimeoutError):
        return Reason.TIMED_OUT, None
    if isinstance(exc, OSError):
        # ConnectionRefusedError, socket.gaierror, ssl.SSLError and the rest.
        return Reason.UNREACHABLE, None
    return Reason.CONNECTION_LOST, None


def _from_connection_closed(exc: ConnectionClosed) -> Reason:
    sent, rcvd = exc.sent, exc.rcvd
    client_closed_first = sent is not None and (rcvd is None or exc.rcvd_then_sent is False)
    if client_closed_first and sent is not None and sent.code in CLIENT_PROTOCOL_FAILURE_CODES:
        return Reason.PROTOCOL_ERROR
    # With no close frame from the gateway (1006), even when the client sent
    # one (1011 on a keepalive ping timeout), the connection was lost.
    return from_close_code(rcvd.code if rcvd is not None else None)
