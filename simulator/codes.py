"""The close codes of PROTOCOL.md, as the gateway's side writes them.

The simulator is the reference gateway the platform is tested against, so it
takes its close codes from the protocol document, not from the client it
checks: this table is written from PROTOCOL.md section 4 (and section 5's
1002). ``tests/simulator/test_codes.py`` holds it against the platform's
classifier, so a code that the two read differently fails a test instead of
passing unnoticed on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CloseCode:
    """One row of PROTOCOL.md's close-code table."""

    code: int
    # The client reaction's name in PROTOCOL.md (the reason the client
    # records), which the control API also accepts in place of the number.
    reason: str
    # transient, restart, repair, long_pause or terminal.
    kind: str


PROTOCOL_CLOSE_CODES: tuple[CloseCode, ...] = (
    # Section 4.
    CloseCode(1000, "connection_closed", "transient"),
    CloseCode(1001, "connection_closed", "transient"),
    CloseCode(1006, "connection_lost", "transient"),  # never on the wire: no close frame at all
    CloseCode(4408, "timed_out", "transient"),
    CloseCode(4428, "connection_closed", "transient"),
    CloseCode(4503, "unavailable", "transient"),
    CloseCode(4515, "restart_required", "restart"),
    CloseCode(4500, "bad_session", "repair"),
    CloseCode(4402, "temporarily_banned", "long_pause"),
    CloseCode(4405, "client_outdated", "terminal"),
    CloseCode(4401, "logged_out", "terminal"),
    CloseCode(4403, "forbidden", "terminal"),
    CloseCode(4411, "multidevice_mismatch", "terminal"),
    CloseCode(4440, "replaced", "terminal"),
    # Section 5: the client's own close after too many malformed frames.
    CloseCode(1002, "protocol_error", "transient"),
)

# The code the gateway closes with for each reason it can give by name: the
# 4xxx rows of section 4 (1000 and 1001 also read as connection_closed, but a
# gateway that names the reason uses 4428).
GATEWAY_CLOSE_CODES: dict[str, int] = {row.reason: row.code for row in PROTOCOL_CLOSE_CODES if 4000 <= row.code <= 4999}

LOGGED_OUT = GATEWAY_CLOSE_CODES["logged_out"]
REPLACED = GATEWAY_CLOSE_CODES["replaced"]
