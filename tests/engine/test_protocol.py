"""The gateway protocol's client side, tested by feeding frames in (PROTOCOL.md v1).

No socket and no clock: every frame goes in as text with the time, and the
test reads the typed event that comes out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.protocol import (
    Ack,
    ClientProtocol,
    Error,
    Hello,
    Inbound,
    Malformed,
    MalformedReason,
    Nack,
    PairCode,
    PairCodeFailed,
    Paired,
    Qr,
    Ready,
    Receipt,
)

HELLO = {"type": "hello", "v": 1, "session_id": "s-1", "paired": True, "heartbeat_s": 20}


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def after_hello(**options: Any) -> ClientProtocol:
    protocol = ClientProtocol(**options)
    assert isinstance(protocol.receive_text(json.dumps(HELLO), 0.0), Hello)
    return protocol


def receive(fields: dict[str, Any]) -> object:
    return after_hello().receive_text(json.dumps(fields), 1.0)


# --- hello -------------------------------------------------------------------------


def test_hello_gives_the_session_id_pairing_and_heartbeat() -> None:
    protocol = ClientProtocol()
    hello = protocol.receive_text(json.dumps(HELLO), 0.0)
    assert hello == Hello(session_id="s-1", paired=True, heartbeat_s=20.0)
    assert protocol.hello == hello


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({}, Hello(session_id="", paired=False, heartbeat_s=None)),
        ({"session_id": None, "paired": None, "heartbeat_s": None}, Hello("", False, None)),
        ({"session_id": 42}, Hello("42", False, None)),
        ({"session_id": "x" * 150}, Hello("x" * 100, False, None)),
        ({"paired": "yes"}, Hello("", False, None)),
        ({"paired": 1}, Hello("", False, None)),
        ({"heartbeat_s": 7.5}, Hello("", False, 7.5)),
        ({"heartbeat_s": 0}, Hello("", False, None)),
        ({"heartbeat_s": -5}, Hello("", False, None)),
        ({"heartbeat_s": True}, Hello("", False, None)),
        ({"heartbeat_s": "20"}, Hello("", False, None)),
        ({"heartbeat_s": 10**400}, Hello("", False, None)),
    ],
)
def test_hello_fields_of_the_wrong_type_count_as_absent(fields: dict[str, Any], expected: Hello) -> None:
    assert ClientProtocol().receive_text(frame(type="hello", **fields), 0.0) == expected


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_a_heartbeat_that_is_not_a_finite_number_is_ignored(constant: str) -> None:
    hello = ClientProtocol().receive_text(f'{{"type": "hello", "heartbeat_s": {constant}}}', 0.0)
    assert hello == Hello("", False, None)


def test_frames_before_hello_are_ignored_and_a_second_hello_too() -> None:
    protocol = ClientProtocol()
    for early in ({"type": "ready"}, {"type": "qr", "code": "c"}, {"type": "ack", "id": "m-1"}):
        assert protocol.receive_text(json.dumps(early), 0.0) is None
    assert protocol.hello is None and not protocol.ready
    assert isinstance(protocol.receive_text(json.dumps(HELLO), 0.0), Hello)
    assert protocol.receive_text(frame(type="hello", session_id="s-2"), 0.0) is None
    assert protocol.hello is not None and protocol.hello.session_id == "s-1"


def test_a_malformed_frame_before_hello_is_still_malformed() -> None:
    assert ClientProtocol().receive_text("{", 0.0) == Malformed(MalformedReason.NOT_JSON, over_budget=False)


# --- qr, paired, ready --------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"code": "2@abc", "expires_s": 20}, Qr("2@abc", 20.0)),
        ({"code": "2@abc", "expires_s": 1.5}, Qr("2@abc", 1.5)),
        ({"code": "c" * 600, "expires_s": 20}, Qr("c" * 500, 20.0)),
        ({"code": "2@abc"}, Qr("2@abc", 0.0)),
        ({"code": "2@abc", "expires_s": "20"}, Qr("2@abc", 0.0)),
        ({"code": "2@abc", "expires_s": True}, Qr("2@abc", 0.0)),
        ({"code": "2@abc", "expires_s": 10**400}, Qr("2@abc", 0.0)),
        ({"code": 123, "expires_s": 20}, None),
        ({"expires_s": 20}, None),
    ],
)
def test_qr_needs_a_string_code(fields: dict[str, Any], expected: Qr | None) -> None:
    assert receive({"type": "qr", **fields}) == expected


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"account": "+15551230000"}, Paired("+15551230000")),
        ({"account": "+1" + "5" * 30}, Paired(("+1" + "5" * 30)[:20])),
        ({"account": 15551230000}, Paired("")),
        ({}, Paired("")),
    ],
)
def test_paired_gives_the_account_or_nothing(fields: dict[str, Any], expected: Paired) -> None:
    assert receive({"type": "paired", **fields}) == expected


def test_only_the_first_ready_is_an_event() -> None:
    protocol = after_hello()
    assert not protocol.ready
    assert protocol.receive_text(frame(type="ready"), 1.0) == Ready()
    assert protocol.ready
    assert protocol.receive_text(frame(type="ready"), 2.0) is None


# --- ack, nack, receipt -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["ack", "nack", "receipt"])
@pytest.mark.parametrize("client_id", [None, "", 42, ["m-1"], {"id": "m-1"}])
def test_a_message_frame_without_a_string_id_is_ignored(kind: str, client_id: Any) -> None:
    fields = {"type": kind, "server_id": "w-1", "error": "x", "status": "read"}
    if client_id is not None:
        fields["id"] = client_id
    assert receive(fields) is None


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"id": "m-1", "server_id": "wamid.1"}, Ack("m-1", "wamid.1")),
        ({"id": "m-1", "server_id": 77}, Ack("m-1", "77")),
        ({"id": "m-1", "server_id": None}, Ack("m-1", "")),
        ({"id": "m-1"}, Ack("m-1", "")),
        ({"id": "m-1", "server_id": "w" * 150}, Ack("m-1", "w" * 100)),
    ],
)
def test_ack(fields: dict[str, Any], expected: Ack) -> None:
    assert receive({"type": "ack", **fields}) == expected


@pytest.mark.parametrize(
    "fields, expected",
    [
        (
            {"id": "m-1", "error": "invalid_number", "permanent": True},
            Nack("m-1", permanent=True, error="invalid_number", retry_after_s=None),
        ),
        (
            {"id": "m-1", "error": "rate_limited", "permanent": False, "retry_after_s": 30},
            Nack("m-1", permanent=False, error="rate_limited", retry_after_s=30.0),
        ),
        ({"id": "m-1", "retry_after_s": 0}, Nack("m-1", False, "", 0.0)),
        ({"id": "m-1", "retry_after_s": 2.5}, Nack("m-1", False, "", 2.5)),
        ({"id": "m-1", "retry_after_s": -1}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "retry_after_s": True}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "retry_after_s": "30"}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "retry_after_s": 10**400}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "permanent": "true"}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "permanent": 1}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "error": 404}, Nack("m-1", False, "404", None)),
        ({"id": "m-1", "error": 0}, Nack("m-1", False, "", None)),
        ({"id": "m-1", "error": "e" * 600}, Nack("m-1", False, "e" * 500, None)),
        ({"id": "m-1"}, Nack("m-1", False, "", None)),
    ],
)
def test_nack(fields: dict[str, Any], expected: Nack) -> None:
    assert receive({"type": "nack", **fields}) == expected


def test_a_retry_after_that_is_infinite_is_absent() -> None:
    event = after_hello().receive_text('{"type": "nack", "id": "m-1", "retry_after_s": Infinity}', 1.0)
    assert event == Nack("m-1", False, "", None)


@pytest.mark.parametrize(
    "status, expected",
    [
        ("delivered", Receipt("m-1", "delivered")),
        ("read", Receipt("m-1", "read")),
        ("played", None),
        ("READ", None),
        (None, None),
        (1, None),
    ],
)
def test_receipt_is_delivered_or_read(status: Any, expected: Receipt | None) -> None:
    assert receive({"type": "receipt", "id": "m-1", "status": status}) == expected


# --- inbound, error --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"server_id": "in-1", "from": "+15551230000", "text": "STOP"}, Inbound("in-1", "+15551230000", "STOP")),
        ({"from": "+15551230000", "text": ""}, Inbound("", "+15551230000", "")),
        ({"server_id": None, "from": "+1", "text": "hi"}, Inbound("", "+1", "hi")),
        ({"server_id": 9, "from": "+1", "text": "hi"}, Inbound("9", "+1", "hi")),
        (
            {"server_id": "i" * 150, "from": "+" + "1" * 30, "text": "t" * 5000},
            Inbound("i" * 100, ("+" + "1" * 30)[:20], "t" * 4096),
        ),
        ({"server_id": "in-1", "from": 15551230000, "text": "hi"}, None),
        ({"server_id": "in-1", "from": "+15551230000", "text": None}, None),
        ({"server_id": "in-1", "text": "hi"}, None),
        ({"server_id": "in-1", "from": "+15551230000"}, None),
    ],
)
def test_inbound_needs_a_sender_and_a_text(fields: dict[str, Any], expected: Inbound | None) -> None:
    assert receive({"type": "inbound", **fields}) == expected


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"code": "not_ready", "message": "send before ready"}, Error("not_ready", "send before ready")),
        ({"code": "bad_frame", "message": "m" * 300}, Error("bad_frame", "m" * 200)),
        ({}, Error("None", "None")),
    ],
)
def test_error_is_a_complaint(fields: dict[str, Any], expected: Error) -> None:
    assert receive({"type": "error", **fields}) == expected


# --- optional features: pairing by phone number (section 6) ---------------------------

PAIRING_HELLO = HELLO | {"paired": False, "features": ["pair_code"]}
QR = {"type": "qr", "code": "2@one", "expires_s": 20}


def showing_qr(hello: dict[str, Any] = PAIRING_HELLO) -> ClientProtocol:
    protocol = ClientProtocol()
    protocol.receive_text(json.dumps(hello), 0.0)
    assert isinstance(protocol.receive_text(json.dumps(QR), 1.0), Qr)
    return protocol


def test_hello_says_which_optional_frames_the_gateway_serves() -> None:
    hello = ClientProtocol().receive_text(frame(type="hello", features=["pair_code", "media"]), 0.0)
    assert isinstance(hello, Hello)
    assert hello.features == frozenset({"pair_code", "media"})


@pytest.mark.parametrize(
    "features",
    [None, "pair_code", {"pair_code": True}, [1], ["pair_code", 2], [""], ["x" * 65], ["f"] * 33],
    ids=["null", "string", "object", "number", "mixed", "empty-name", "long-name", "too-many"],
)
def test_features_absent_or_malformed_announce_nothing(features: Any) -> None:
    hello = ClientProtocol().receive_text(frame(type="hello", features=features), 0.0)
    assert hello == Hello("", False, None, frozenset())


def test_a_v1_hello_announces_nothing_and_still_opens_the_session() -> None:
    protocol = after_hello()
    assert protocol.hello is not None and protocol.hello.features == frozenset()
    assert protocol.receive_text(frame(type="ready"), 1.0) == Ready()


def test_a_pairing_code_is_refused_when_the_gateway_did_not_announce_it() -> None:
    protocol = showing_qr(HELLO | {"paired": False})
    refusal = protocol.pair_code_refusal()
    assert refusal is not None and "did not announce pair_code" in refusal


def test_a_pairing_code_may_be_asked_for_only_while_a_qr_code_is_shown() -> None:
    protocol = ClientProtocol()
    protocol.receive_text(json.dumps(PAIRING_HELLO), 0.0)
    assert "not awaiting pairing" in (protocol.pair_code_refusal() or "")
    protocol.receive_text(json.dumps(QR), 1.0)
    assert protocol.pair_code_refusal() is None
    protocol.receive_text(frame(type="paired", account="+6281234567890"), 2.0)
    assert "not awaiting pairing" in (protocol.pair_code_refusal() or "")


def test_a_paired_session_is_never_awaiting_pairing() -> None:
    protocol = ClientProtocol()
    protocol.receive_text(json.dumps(PAIRING_HELLO | {"paired": True}), 0.0)
    protocol.receive_text(frame(type="ready"), 1.0)
    assert "not awaiting pairing" in (protocol.pair_code_refusal() or "")


def test_the_pair_code_frame_is_serialised_compactly() -> None:
    protocol = showing_qr()
    assert protocol.pair_code("+6281234567890") == '{"type":"pair_code","phone":"+6281234567890"}'
    assert protocol.pair_code_pending


@pytest.mark.parametrize(
    "phone", ["6281234567890", "+0812345678", "+62 812345678", "+1234567", "+1234567890123456", "", "+62-8123456"]
)
def test_the_pair_code_frame_takes_only_an_e164_phone(phone: str) -> None:
    protocol = showing_qr()
    with pytest.raises(ValueError):
        protocol.pair_code(phone)
    assert not protocol.pair_code_pending


def test_the_answer_is_the_code_and_ends_the_request() -> None:
    protocol = showing_qr()
    protocol.pair_code("+6281234567890")
    assert protocol.receive_text(frame(type="pair_code", code="ABCD-1234"), 2.0) == PairCode("ABCD-1234")
    assert not protocol.pair_code_pending


@pytest.mark.parametrize("code", [None, "", "abcd1234", "A" * 17, 12345678, "AB CD", ["ABCD1234"]])
def test_a_pair_code_that_cannot_be_shown_is_malformed(code: Any) -> None:
    protocol = showing_qr()
    protocol.pair_code("+6281234567890")
    fields = {"type": "pair_code"} if code is None else {"type": "pair_code", "code": code}
    event = protocol.receive_text(json.dumps(fields), 2.0)
    assert event == Malformed(MalformedReason.BAD_PAIR_CODE, over_budget=False)
    assert protocol.pair_code_pending


def test_an_error_naming_pair_code_is_the_pending_requests_failure() -> None:
    protocol = showing_qr()
    protocol.pair_code("+6281234567890")
    failed = protocol.receive_text(frame(type="error", code="pair_code_failed", message="no code"), 2.0)
    assert failed == PairCodeFailed("pair_code_failed", "no code")
    # Answered: the next such complaint is only a complaint.
    again = protocol.receive_text(frame(type="error", code="invalid_pair_code", message="late"), 3.0)
    assert again == Error("invalid_pair_code", "late")


def test_other_errors_stay_complaints_while_a_request_waits() -> None:
    protocol = showing_qr()
    protocol.pair_code("+6281234567890")
    complaint = protocol.receive_text(frame(type="error", code="invalid_send", message="bad id"), 2.0)
    assert complaint == Error("invalid_send", "bad id")
    assert protocol.pair_code_pending


def test_without_a_request_an_error_naming_pair_code_is_a_complaint() -> None:
    protocol = showing_qr()
    event = protocol.receive_text(frame(type="error", code="pair_code_unavailable", message="paired"), 2.0)
    assert event == Error("pair_code_unavailable", "paired")


# --- forward compatibility ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["presence", "pair_codes", "HELLO", "Ack", ""])
def test_unknown_types_are_ignored_not_malformed(kind: str) -> None:
    assert receive({"type": kind, "id": "m-1", "code": "x"}) is None


def test_unknown_fields_are_ignored() -> None:
    assert receive({"type": "ack", "id": "m-1", "server_id": "w", "extra": {"a": [1]}}) == Ack("m-1", "w")


# --- malformed input (section 5) -----------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"type": "ack", "id": ', MalformedReason.NOT_JSON),
        ("", MalformedReason.NOT_JSON),
        ("hello", MalformedReason.NOT_JSON),
        ("[" * 100_000 + "]" * 100_000, MalformedReason.TOO_BIG),
        ("[" * 30_000 + "]" * 30_000, MalformedReason.NOT_JSON),  # too deep for the decoder
        ("1" * 5000, MalformedReason.NOT_JSON),  # too many digits for the decoder
        ('["not", "an", "object"]', MalformedReason.NOT_OBJECT),
        ('"ready"', MalformedReason.NOT_OBJECT),
        ("null", MalformedReason.NOT_OBJECT),
        ("42", MalformedReason.NOT_OBJECT),
        ('{"id": "no-type"}', MalformedReason.NO_TYPE),
        ('{"type": null}', MalformedReason.NO_TYPE),
        ('{"type": 1}', MalformedReason.NO_TYPE),
        ('{"type": ["ack"]}', MalformedReason.NO_TYPE),
    ],
)
def test_frames_that_cannot_be_read_are_malformed(text: str, reason: MalformedReason) -> None:
    assert after_hello().receive_text(text, 1.0) == Malformed(reason, over_budget=False)


def test_a_binary_frame_is_malformed() -> None:
    assert after_hello().receive_binary(1.0) == Malformed(MalformedReason.BINARY, over_budget=False)


def test_the_size_limit_is_in_utf8_bytes() -> None:
    protocol = after_hello(max_frame_bytes=100)
    padding = '{"type": "x", "p": "'
    fits = padding + "é" * ((100 - len(padding) - 2) // 2) + '"}'  # two bytes a character
    assert len(fits.encode()) <= 100
    assert protocol.receive_text(fits, 1.0) is None
    too_big = padding + "é" * 40 + '"}'
    assert len(too_big) <= 100 < len(too_big.encode())
    assert protocol.receive_text(too_big, 1.0) == Malformed(MalformedReason.TOO_BIG, over_budget=False)


def test_more_than_five_malformed_frames_in_sixty_seconds_are_over_budget() -> None:
    protocol = after_hello()
    events = [protocol.receive_text("{", float(t)) for t in range(6)]
    assert [e.over_budget for e in events if isinstance(e, Malformed)] == [False] * 5 + [True]


def test_malformed_frames_older_than_the_window_no_longer_count() -> None:
    protocol = after_hello()
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        assert not protocol.receive_binary(t).over_budget
    # 60 s after the first: still inside the window (older than 60 s drops out).
    assert protocol.receive_binary(60.0).over_budget
    protocol = after_hello()
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        protocol.receive_binary(t)
    assert not protocol.receive_binary(60.5).over_budget


def test_the_budget_is_what_the_caller_passes() -> None:
    protocol = after_hello(malformed_limit=1, malformed_window=10.0)
    events = [protocol.receive_text("[]", t) for t in (0.0, 5.0, 20.0)]
    assert events == [
        Malformed(MalformedReason.NOT_OBJECT, over_budget=False),
        Malformed(MalformedReason.NOT_OBJECT, over_budget=True),
        Malformed(MalformedReason.NOT_OBJECT, over_budget=False),
    ]


def test_well_formed_frames_do_not_reset_the_budget() -> None:
    protocol = after_hello()
    for t in range(5):
        protocol.receive_binary(float(t))
        assert protocol.receive_text(frame(type="ack", id="m-1"), float(t)) == Ack("m-1", "")
    assert protocol.receive_binary(5.0).over_budget


# --- client frames ------------------------------------------------------------------------


def test_send_is_serialised_compactly_with_the_stable_client_id() -> None:
    text = ClientProtocol().send("0b7c-1", "+15551230000", 'Hi "Ana"\nünïcode')
    assert text == '{"type":"send","id":"0b7c-1","to":"+15551230000","text":"Hi \\"Ana\\"\\n\\u00fcn\\u00efcode"}'
    assert json.loads(text) == {"type": "send", "id": "0b7c-1", "to": "+15551230000", "text": 'Hi "Ana"\nünïcode'}


def test_a_session_in_order() -> None:
    protocol = ClientProtocol()
    frames = [
        HELLO | {"paired": False},
        {"type": "qr", "code": "2@one", "expires_s": 20},
        {"type": "paired", "account": "+15551230000"},
        {"type": "ready"},
        {"type": "ack", "id": "m-1", "server_id": "w-1"},
        {"type": "receipt", "id": "m-1", "status": "delivered"},
        {"type": "nack", "id": "m-2", "error": "rate_limited", "retry_after_s": 5},
        {"type": "inbound", "server_id": "in-1", "from": "+15551239999", "text": "hi"},
    ]
    events = [protocol.receive_text(json.dumps(f), float(i)) for i, f in enumerate(frames)]
    assert events == [
        Hello("s-1", False, 20.0),
        Qr("2@one", 20.0),
        Paired("+15551230000"),
        Ready(),
        Ack("m-1", "w-1"),
        Receipt("m-1", "delivered"),
        Nack("m-2", False, "rate_limited", 5.0),
        Inbound("in-1", "+15551239999", "hi"),
    ]


def test_events_are_frozen() -> None:
    ack = Ack("m-1", "w-1")
    with pytest.raises(AttributeError):
        ack.id = "m-2"  # type: ignore[misc]
