"""The reason classifier: every row of PROTOCOL.md sections 1, 3, 4 and 5.

Exceptions are the real websockets 15 objects that
``websockets.asyncio.client.connect`` and a live connection raise.
"""

from __future__ import annotations

import errno
import socket
import ssl

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    SecurityError,
)
from websockets.frames import Close
from websockets.http11 import Response

from instances.reasons import (
    CLOSE_CODES,
    GATEWAY_CLOSE_CODES,
    KINDS,
    Kind,
    Reason,
    from_close_code,
    from_exception,
    from_http_status,
    is_terminal,
    kind_of,
    parse_retry_after,
)


def refused_upgrade(status: int, headers: dict[str, str] | None = None) -> InvalidStatus:
    return InvalidStatus(Response(status, "refused", Headers(headers or {}), b""))


def closed_by_gateway(code: int, reason: str = "") -> ConnectionClosedError:
    """The gateway sent a close frame and the client had not sent one."""
    return ConnectionClosedError(Close(code, reason), None)


# --- The vocabulary --------------------------------------------------------------


def test_every_reason_has_a_kind() -> None:
    assert set(KINDS) == set(Reason)


def test_gateway_close_codes_round_trip_through_the_classifier() -> None:
    for reason, code in GATEWAY_CLOSE_CODES.items():
        assert from_close_code(code) is reason


def test_kind_of_and_is_terminal_agree_with_the_table() -> None:
    for reason, kind in KINDS.items():
        assert kind_of(reason) is kind
        assert is_terminal(reason) is (kind is Kind.TERMINAL)


# --- Section 1: HTTP statuses that refuse the upgrade ------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (401, Reason.UNAUTHORIZED, Kind.TERMINAL),
        (403, Reason.UNAUTHORIZED, Kind.TERMINAL),
        (404, Reason.NOT_FOUND, Kind.TERMINAL),
        (429, Reason.RATE_LIMITED, Kind.TRANSIENT),
        (500, Reason.UNAVAILABLE, Kind.TRANSIENT),
        (502, Reason.UNAVAILABLE, Kind.TRANSIENT),
        (503, Reason.UNAVAILABLE, Kind.TRANSIENT),
        (504, Reason.UNAVAILABLE, Kind.TRANSIENT),
        (599, Reason.UNAVAILABLE, Kind.TRANSIENT),
    ],
)
def test_a_refused_upgrade_is_classified_by_its_status(status: int, reason: Reason, kind: Kind) -> None:
    assert from_http_status(status) is reason
    assert from_exception(refused_upgrade(status)) == (reason, None)
    assert kind_of(reason) is kind


@pytest.mark.parametrize("status", [400, 408, 426, 302])
def test_an_unexpected_status_is_transient_so_the_breaker_bounds_it(status: int) -> None:
    assert kind_of(from_http_status(status)) is Kind.TRANSIENT


def test_429_carries_its_retry_after() -> None:
    exc = InvalidStatus(Response(429, "Too Many", Headers({"Retry-After": "7"}), b""))
    assert from_exception(exc) == (Reason.RATE_LIMITED, 7.0)


def test_429_without_retry_after_has_none() -> None:
    assert from_exception(refused_upgrade(429)) == (Reason.RATE_LIMITED, None)


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert from_exception(refused_upgrade(503, {"retry-after": "12"})) == (Reason.UNAVAILABLE, 12.0)


def test_a_repeated_retry_after_uses_the_first_value() -> None:
    exc = InvalidStatus(Response(429, "Too Many", Headers([("Retry-After", "3"), ("Retry-After", "9")]), b""))
    assert from_exception(exc) == (Reason.RATE_LIMITED, 3.0)


def test_an_http_date_retry_after_is_ignored_not_fatal() -> None:
    exc = refused_upgrade(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert from_exception(exc) == (Reason.RATE_LIMITED, None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


# --- Section 1: network failures before the upgrade ---------------------------------


def test_a_refused_tcp_connection_is_unreachable() -> None:
    exc = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 1)")
    assert from_exception(exc) == (Reason.UNREACHABLE, None)


def test_a_dns_failure_is_unreachable() -> None:
    exc = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert from_exception(exc) == (Reason.UNREACHABLE, None)


def test_a_tls_failure_is_unreachable() -> None:
    assert from_exception(ssl.SSLError(1, "wrong version number")) == (Reason.UNREACHABLE, None)
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert from_exception(verify) == (Reason.UNREACHABLE, None)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ..."),
    ],
)
def test_any_other_os_error_is_unreachable(exc: OSError) -> None:
    assert from_exception(exc) == (Reason.UNREACHABLE, None)


def test_the_open_timeout_is_timed_out() -> None:
    # websockets raises TimeoutError("timed out during opening handshake"),
    # an OSError subclass that must not be mistaken for unreachable.
    assert from_exception(TimeoutError("timed out during opening handshake")) == (Reason.TIMED_OUT, None)
    assert from_exception(TimeoutError()) == (Reason.TIMED_OUT, None)


def test_a_gateway_hanging_up_during_the_upgrade_is_unavailable() -> None:
    exc = InvalidMessage("did not receive a valid HTTP response")
    exc.__cause__ = EOFError("connection closed while reading HTTP status line")
    assert from_exception(exc) == (Reason.UNAVAILABLE, None)


@pytest.mark.parametrize(
    "exc",
    [
        InvalidUpgrade("Upgrade", "h2c"),
        InvalidHeader("Sec-WebSocket-Accept"),
        NegotiationError("unsupported subprotocol: chat"),
        SecurityError("more than 10 redirects"),
        InvalidHandshake("something else"),
    ],
)
def test_any_other_bad_handshake_is_a_transient_protocol_error(exc: InvalidHandshake) -> None:
    reason, retry_after = from_exception(exc)
    assert reason is Reason.PROTOCOL_ERROR
    assert retry_after is None
    assert kind_of(reason) is Kind.TRANSIENT


@pytest.mark.parametrize(
    "exc",
    [
        InvalidURI("http://gateway", "scheme isn't ws or wss"),
        InvalidProxy("ftp://proxy", "scheme isn't supported"),
        InvalidProxyStatus(Response(407, "Proxy Authentication Required", Headers(), b"")),
    ],
)
def test_a_bad_address_or_proxy_is_transient_unreachable(exc: Exception) -> None:
    assert from_exception(exc) == (Reason.UNREACHABLE, None)


def test_end_of_stream_is_connection_lost() -> None:
    assert from_exception(EOFError("stream ended")) == (Reason.CONNECTION_LOST, None)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), ValueError("bad"), ConcurrencyError("two readers"), KeyboardInterrupt()],
)
def test_anything_unexpected_is_connection_lost(exc: BaseException) -> None:
    assert from_exception(exc) == (Reason.CONNECTION_LOST, None)


# --- Section 4: close codes -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (1000, Reason.CONNECTION_CLOSED, Kind.TRANSIENT),
        (1001, Reason.CONNECTION_CLOSED, Kind.TRANSIENT),
        (4408, Reason.TIMED_OUT, Kind.TRANSIENT),
        (4428, Reason.CONNECTION_CLOSED, Kind.TRANSIENT),
        (4503, Reason.UNAVAILABLE, Kind.TRANSIENT),
        (4515, Reason.RESTART_REQUIRED, Kind.RESTART),
        (4500, Reason.BAD_SESSION, Kind.REPAIR),
        (4402, Reason.TEMPORARILY_BANNED, Kind.LONG_PAUSE),
        (4405, Reason.CLIENT_OUTDATED, Kind.TERMINAL),
        (4401, Reason.LOGGED_OUT, Kind.TERMINAL),
        (4403, Reason.FORBIDDEN, Kind.TERMINAL),
        (4411, Reason.MULTIDEVICE_MISMATCH, Kind.TERMINAL),
        (4440, Reason.REPLACED, Kind.TERMINAL),
    ],
)
def test_every_close_code_in_the_table(code: int, reason: Reason, kind: Kind) -> None:
    assert from_close_code(code) is reason
    assert from_exception(closed_by_gateway(code)) == (reason, None)
    assert kind_of(reason) is kind


@pytest.mark.parametrize("code", [1000, 1001])
def test_a_normal_close_arrives_as_connection_closed_ok(code: int) -> None:
    exc = ConnectionClosedOK(Close(code, ""), Close(code, ""), True)
    assert from_exception(exc) == (Reason.CONNECTION_CLOSED, None)


def test_no_close_frame_is_1006_connection_lost() -> None:
    assert from_close_code(None) is Reason.CONNECTION_LOST
    assert from_close_code(1006) is Reason.CONNECTION_LOST
    assert from_exception(ConnectionClosedError(None, None)) == (Reason.CONNECTION_LOST, None)


@pytest.mark.parametrize("code", [4000, 4001, 4299, 4404, 4999])
def test_an_unlisted_4xxx_code_is_transient(code: int) -> None:
    assert code not in CLOSE_CODES
    assert from_close_code(code) is Reason.CONNECTION_CLOSED
    assert from_exception(closed_by_gateway(code)) == (Reason.CONNECTION_CLOSED, None)


@pytest.mark.parametrize("code", [1005, 1003, 1008, 1014, 3000, 3999])
def test_other_codes_are_transient(code: int) -> None:
    assert kind_of(from_close_code(code)) is Kind.TRANSIENT


@pytest.mark.parametrize("code", [1011, 1012, 1013])
def test_a_gateway_error_close_is_unavailable(code: int) -> None:
    assert from_exception(closed_by_gateway(code)) == (Reason.UNAVAILABLE, None)


def test_the_gateway_closing_during_the_client_close_is_classified_by_its_code() -> None:
    # The client closed with 1000 (e.g. shutting down) and the gateway echoed.
    exc = ConnectionClosedOK(Close(1000, ""), Close(1000, ""), False)
    assert from_exception(exc) == (Reason.CONNECTION_CLOSED, None)


# --- Section 3: keepalive -----------------------------------------------------------


def test_a_keepalive_ping_timeout_is_connection_lost() -> None:
    # websockets fails the connection with 1011 and never receives a frame back.
    exc = ConnectionClosedError(None, Close(1011, "keepalive ping timeout"))
    reason, retry_after = from_exception(exc)
    assert reason is Reason.CONNECTION_LOST
    assert retry_after is None
    assert kind_of(reason) is Kind.TRANSIENT


# --- Section 5: malformed input -----------------------------------------------------


def test_the_malformed_frame_budget_overflow_is_a_transient_protocol_error() -> None:
    # The client closed with 1002 and the gateway echoed it.
    exc = ConnectionClosedError(Close(1002, ""), Close(1002, "too many malformed frames"), False)
    reason, _ = from_exception(exc)
    assert reason is Reason.PROTOCOL_ERROR
    assert kind_of(reason) is Kind.TRANSIENT


def test_the_overflow_is_a_protocol_error_even_when_the_gateway_never_echoes() -> None:
    exc = ConnectionClosedError(None, Close(1002, "too many malformed frames"))
    assert from_exception(exc) == (Reason.PROTOCOL_ERROR, None)


def test_the_overflow_is_a_protocol_error_whatever_code_the_gateway_echoes() -> None:
    exc = ConnectionClosedError(Close(1000, ""), Close(1002, "too many malformed frames"), False)
    assert from_exception(exc) == (Reason.PROTOCOL_ERROR, None)


@pytest.mark.parametrize("code", [1007, 1009])
def test_websockets_failing_a_bad_frame_is_a_protocol_error(code: int) -> None:
    # Invalid UTF-8 (1007) or a frame over max_size (1009).
    assert from_exception(ConnectionClosedError(None, Close(code, ""))) == (Reason.PROTOCOL_ERROR, None)


def test_a_gateway_close_that_came_first_wins_over_the_client_reply() -> None:
    # The gateway sent 4401; the client's reply is irrelevant to the reason.
    exc = ConnectionClosedError(Close(4401, ""), Close(1002, ""), True)
    assert from_exception(exc) == (Reason.LOGGED_OUT, None)


@pytest.mark.parametrize("exc", [ProtocolError("invalid opcode"), PayloadTooBig(2_000_000, 1_048_576)])
def test_a_frame_level_protocol_exception_is_a_protocol_error(exc: Exception) -> None:
    assert from_exception(exc) == (Reason.PROTOCOL_ERROR, None)
