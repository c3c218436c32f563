"""Alert conditions, the event cursor, signatures, backoff and the health
monitor's state machine: pure logic, fed inputs and read back."""

from __future__ import annotations

import pytest

from instances.models import EventKind
from monitoring import signing
from monitoring.delivery import backoff
from monitoring.transitions import (
    BREAKER_OPEN,
    FIRING,
    RELEVANT_KINDS,
    RESOLVED,
    TERMINAL_REASONS,
    Change,
    Cursor,
    instance_event,
    platform_condition,
)
from monitoring.watchdog import DOWN, Probe, Reported, step
from tests.fixtures.webhooks import verify as verify_signature


def feed(events: list[tuple[str, str]]) -> list[Change]:
    active: dict[str, str] = {}
    changes: list[Change] = []
    for kind, reason in events:
        changes += instance_event(active, kind, reason)
    return changes


def test_a_breaker_opening_fires_once_until_it_closes() -> None:
    changes = feed(
        [
            (EventKind.BREAKER_OPENED, "unavailable"),
            (EventKind.BREAKER_HALF_OPEN, ""),
            (EventKind.BREAKER_OPENED, "unavailable"),  # the trial failed: same condition
            (EventKind.BREAKER_HALF_OPEN, ""),
            (EventKind.READY, ""),
            (EventKind.BREAKER_CLOSED, ""),
        ]
    )
    assert changes == [Change(BREAKER_OPEN, FIRING, "unavailable"), Change(BREAKER_OPEN, RESOLVED)]


def test_a_breaker_reset_resolves_it() -> None:
    changes = feed([(EventKind.BREAKER_OPENED, "timed_out"), (EventKind.RESET_BREAKER, "")])
    assert [c.status for c in changes] == [FIRING, RESOLVED]


@pytest.mark.parametrize("reason", ["logged_out", "replaced", "forbidden", "client_outdated"])
def test_a_terminal_reason_fires_once_and_resolves_when_connected_again(reason: str) -> None:
    changes = feed(
        [
            (EventKind.DISCONNECT, reason),
            (EventKind.CONNECT, ""),
            (EventKind.ATTEMPT, ""),
            (EventKind.DISCONNECT, reason),
            (EventKind.READY, ""),
            (EventKind.DISCONNECT, "connection_lost"),
        ]
    )
    assert changes == [Change(reason, FIRING, reason), Change(reason, RESOLVED, reason)]


def test_every_terminal_reason_of_the_protocol_alerts() -> None:
    assert {"logged_out", "replaced", "forbidden", "client_outdated"} <= TERMINAL_REASONS
    assert "connection_lost" not in TERMINAL_REASONS


def test_the_event_kinds_are_the_models() -> None:
    assert {str(kind) for kind in EventKind} >= RELEVANT_KINDS


def test_transient_disconnects_never_alert() -> None:
    assert feed([(EventKind.DISCONNECT, "connection_lost"), (EventKind.DISCONNECT, "timed_out")]) == []


def test_platform_conditions_fire_on_transitions_only() -> None:
    assert platform_condition(None, False) is None
    assert platform_condition(None, True) == FIRING
    assert platform_condition(FIRING, True) is None
    assert platform_condition(FIRING, False) == RESOLVED
    assert platform_condition(RESOLVED, False) is None


def test_the_cursor_remembers_skipped_ids_until_they_show_up() -> None:
    cursor = Cursor()
    cursor.advance([1, 2, 5], now=100.0, grace_s=60)
    assert cursor.last_id == 5
    assert cursor.unread_ids() == [3, 4]
    cursor.advance([4, 6], now=110.0, grace_s=60)
    assert cursor.unread_ids() == [3]
    # A gap that never shows up (a rolled-back transaction) is forgotten.
    cursor.advance([], now=161.0, grace_s=60)
    assert cursor.unread_ids() == []
    assert Cursor.from_json(cursor.as_json()) == cursor


def test_a_jump_of_the_id_sequence_is_not_waited_for() -> None:
    cursor = Cursor(last_id=10)
    cursor.advance([50_000], now=0.0, grace_s=60)
    assert cursor.last_id == 50_000
    assert cursor.gaps == {}


def test_a_signature_verifies_only_with_its_secret_body_and_fresh_time() -> None:
    body = b'{"kind":"breaker_open"}'
    value = signing.signature("k", 1_700_000_000, body)
    assert value.startswith("sha256=") and len(value) == 7 + 64
    assert verify_signature("k", "1700000000", value, body, now=1_700_000_100)
    assert not verify_signature("other", "1700000000", value, body, now=1_700_000_100)
    assert not verify_signature("k", "1700000000", value, body + b" ", now=1_700_000_100)
    assert not verify_signature("k", "1700000001", value, body, now=1_700_000_100)
    assert not verify_signature("k", "1700000000", value, body, now=1_700_000_000 + 301)


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    assert [backoff(n, 10, 300) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_the_monitor_alerts_when_the_platform_goes_down_and_comes_back() -> None:
    reported = Reported()
    assert step(reported, Probe("pass", 200), down_after=2) == []
    assert step(reported, Probe(DOWN, detail="refused"), down_after=2) == []  # one blip
    down = step(reported, Probe(DOWN, detail="refused"), down_after=2)
    assert [(t.kind, t.status) for t in down] == [("platform_down", FIRING)]
    assert step(reported, Probe(DOWN), down_after=2) == []
    back = step(reported, Probe("pass", 200), down_after=2)
    assert [(t.kind, t.status) for t in back] == [("platform_down", RESOLVED)]


def test_the_monitor_alerts_on_each_status_change() -> None:
    reported = Reported()
    seen = [step(reported, Probe(s, 200), down_after=1) for s in ["warn", "warn", "fail", "pass", "pass"]]
    assert [[(t.kind, t.status) for t in found] for found in seen] == [
        [("platform_status", FIRING)],
        [],
        [("platform_status", FIRING)],
        [("platform_status", RESOLVED)],
        [],
    ]
