"""The client side of the gateway protocol (PROTOCOL.md version 1), sans I/O.

:class:`ClientProtocol` is the protocol of one session without the session:
frames and the time go in, typed events come out, and the frames the client
sends are serialised here. It never touches a socket, the database, Redis,
settings or a clock, so it is tested by feeding it frames, as
python-websockets tests its own protocol by feeding it bytes. The asyncio
session (:mod:`engine.session`) is a thin driver around it: it receives
frames, passes them in with the time, and acts on the events.

What a frame becomes:

- Not JSON, not an object, no string ``type``, binary, or over the size
  limit: :class:`Malformed` (section 5). Malformed frames are counted in a
  sliding window; the one that exceeds the budget says so
  (:attr:`Malformed.over_budget`) and the driver closes with 1002.
- Before the first ``hello``, every other well-formed frame is ignored; a
  second ``hello`` is ignored too, and so is every ``ready`` after the first.
- A known type whose required field is missing or of the wrong type is
  ignored (``None``), never an error: a ``qr`` without a string ``code``, an
  ``ack``/``nack``/``receipt`` without a non-empty string ``id``, a
  ``receipt`` whose ``status`` is neither ``delivered`` nor ``read``, an
  ``inbound`` whose ``from`` or ``text`` is not a string.
- Optional fields of the wrong type, and numbers that are booleans, negative
  where a duration is meant, or not finite, count as absent.
- Unknown types and unknown fields are ignored (forward compatibility).
- ``hello``'s ``features`` (the optional frames the gateway serves, section
  6) is a list of at most 32 strings of 1-64 characters; absent or anything
  else counts as none announced, so a v1 gateway that says nothing keeps
  working and is never sent an optional frame.
- A ``pair_code`` answer whose ``code`` is not 1-16 characters of
  ``[A-Z0-9-]`` is malformed: it is shown to a person who types it on a phone.
  An ``error`` whose ``code`` names ``pair_code`` (``invalid_pair_code``,
  ``pair_code_failed``...) while a request is unanswered is that request's
  failure (:class:`PairCodeFailed`); any other ``error`` is a complaint.

Strings are cut to the lengths the platform stores: a session id and a
server id to 100 characters, a QR code to 500, an account and a sender to
20, a nack's error to 500, an inbound text to 4096, a complaint to 200.
"""

from __future__ import annotations

import collections
import enum
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

SUBPROTOCOL = "blast-gateway.v1"
# PROTOCOL.md section 5: more than this many malformed frames within the
# window end the session as protocol_error.
MALFORMED_LIMIT = 5
MALFORMED_WINDOW_S = 60.0
# The largest frame the client accepts; the driver's WebSocket library is
# configured with the same limit, so this only guards other drivers.
MAX_FRAME_BYTES = 64 * 1024
# Optional frames (PROTOCOL.md section 6) a gateway announces in ``hello``.
PAIR_CODE = "pair_code"
# Protocol v1.1 (PROTOCOL.md section 2.4).
MEDIA = "media"
CHECK = "check"
PRESENCE = "presence"
MAX_FEATURES = 32
MAX_FEATURE_CHARS = 64
PAIR_CODE_RE = re.compile(r"[A-Z0-9-]{1,16}")
E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")


class MalformedReason(enum.StrEnum):
    """Why a frame is malformed; the value is the detail logged and recorded."""

    BINARY = "binary frame"
    TOO_BIG = "frame too big"
    NOT_JSON = "not JSON"
    NOT_OBJECT = "not an object"
    NO_TYPE = "no type"
    BAD_PAIR_CODE = "pair_code without a readable code"


# -- events (server to client) --------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """The first frame of a session."""

    session_id: str
    paired: bool
    # Keepalive interval the gateway asks for; None when absent or invalid
    # (the client keeps its configured interval).
    heartbeat_s: float | None
    # The optional frames the gateway serves; empty for a v1 gateway.
    features: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Qr:
    """A pairing code to show; ``expires_s`` is 0.0 when absent or invalid."""

    code: str
    expires_s: float


@dataclass(frozen=True)
class Paired:
    """Pairing completed; ``account`` is empty when the gateway gave none."""

    account: str


@dataclass(frozen=True)
class Ready:
    """The session can send, from this frame on (the first ``ready`` only)."""


@dataclass(frozen=True)
class Ack:
    """The message with client id ``id`` was accepted by the network."""

    id: str
    server_id: str


@dataclass(frozen=True)
class Nack:
    """The message was refused; not ``permanent`` means it may be sent again."""

    id: str
    permanent: bool
    error: str
    retry_after_s: float | None


@dataclass(frozen=True)
class Receipt:
    """Delivery progress of an acked message."""

    id: str
    status: Literal["delivered", "read"]


@dataclass(frozen=True)
class Inbound:
    """A message received by the account."""

    server_id: str
    sender: str  # the frame's ``from``
    text: str


@dataclass(frozen=True)
class Error:
    """A non-fatal complaint of the gateway about a client frame."""

    code: str
    message: str
    id: str = ""  # the client frame's id, when the gateway echoed one


@dataclass(frozen=True)
class CheckResult:
    """The answer to a v1.1 ``check``: number -> on the network."""

    id: str
    results: dict[str, bool]


@dataclass(frozen=True)
class PairCode:
    """The pairing code the gateway got for the phone number the client sent."""

    code: str


@dataclass(frozen=True)
class PairCodeFailed:
    """The gateway refused or failed the client's ``pair_code`` request."""

    code: str
    message: str


@dataclass(frozen=True)
class Malformed:
    """A frame that could not be read (PROTOCOL.md section 5).

    ``over_budget`` is True when this frame makes more than the limit within
    the window: the client must close the session with 1002.
    """

    reason: MalformedReason
    over_budget: bool


# What the gateway says about a message the client sent.
MessageUpdate = Ack | Nack | Receipt
Event = (
    Hello
    | Qr
    | Paired
    | Ready
    | Ack
    | Nack
    | Receipt
    | Inbound
    | Error
    | PairCode
    | PairCodeFailed
    | CheckResult
    | Malformed
)


class ClientProtocol:
    """The protocol state of one session, from the client's side.

    ``now`` is any monotonic clock in seconds; it only dates malformed
    frames for the budget. One instance serves one session: a new session
    starts with a new protocol.
    """

    def __init__(
        self,
        *,
        malformed_limit: int = MALFORMED_LIMIT,
        malformed_window: float = MALFORMED_WINDOW_S,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.malformed_limit = malformed_limit
        self.malformed_window = malformed_window
        self.max_frame_bytes = max_frame_bytes
        self.hello: Hello | None = None
        self.ready = False
        # A QR was shown and the account has not paired since: the one time
        # a pairing code may be asked for.
        self.awaiting_pairing = False
        self.pair_code_pending = False
        self._malformed: collections.deque[float] = collections.deque()

    # -- receiving -------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> Event | None:
        """The event a text frame makes, or None when it is ignored."""
        if _utf8_size_over(text, self.max_frame_bytes):
            return self._malformed_frame(MalformedReason.TOO_BIG, now)
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # also the decoder's limits: integer digits, nesting depth
            return self._malformed_frame(MalformedReason.NOT_JSON, now)
        if not isinstance(frame, dict):
            return self._malformed_frame(MalformedReason.NOT_OBJECT, now)
        kind = frame.get("type")
        if not isinstance(kind, str):
            return self._malformed_frame(MalformedReason.NO_TYPE, now)
        if self.hello is None:
            if kind != "hello":
                return None
            self.hello = _hello(frame)
            return self.hello
        if kind == "ready":
            if self.ready:
                return None
            self.ready = True
            self.awaiting_pairing = False
            return Ready()
        if kind == "pair_code":
            return self._pair_code_answer(frame, now)
        reader = _READERS.get(kind)
        event = reader(frame) if reader is not None else None
        match event:
            case Qr():
                self.awaiting_pairing = True
            case Paired():
                self.awaiting_pairing = False
            case Error(code=code, message=message) if self.pair_code_pending and PAIR_CODE in code:
                self.pair_code_pending = False
                return PairCodeFailed(code=code, message=message)
        return event

    def _pair_code_answer(self, frame: dict[str, Any], now: float) -> PairCode | Malformed:
        code = frame.get("code")
        if not isinstance(code, str) or not PAIR_CODE_RE.fullmatch(code):
            return self._malformed_frame(MalformedReason.BAD_PAIR_CODE, now)
        self.pair_code_pending = False
        return PairCode(code=code)

    def receive_binary(self, now: float) -> Malformed:
        """A binary frame: never sent by a gateway, so malformed."""
        return self._malformed_frame(MalformedReason.BINARY, now)

    def _malformed_frame(self, reason: MalformedReason, now: float) -> Malformed:
        window = self._malformed
        window.append(now)
        while window and now - window[0] > self.malformed_window:
            window.popleft()
        return Malformed(reason, over_budget=len(window) > self.malformed_limit)

    # -- sending ---------------------------------------------------------------

    def send(self, client_id: str, to: str, text: str) -> str:
        """The ``send`` frame for one message, as the text to write.

        The caller sends it only after :class:`Ready`. The fields are written
        as given: the message's stable client id, its E.164 number and text
        were validated when it was queued, and the gateway answers a bad one
        with a ``nack`` or an ``error``.
        """
        return _encode({"type": "send", "id": client_id, "to": to, "text": text})

    def supports(self, feature: str) -> bool:
        """Whether this session's ``hello`` announced ``feature``."""
        return self.hello is not None and feature in self.hello.features

    def send_media(self, client_id: str, to: str, media: dict[str, Any], caption: str) -> str:
        """The ``send`` frame of a message with a file (v1.1 ``media``): the
        caller sends it only when :meth:`supports` says ``media``. ``media``
        holds ``kind``, ``url``, ``mime``, ``filename`` and ``size``."""
        frame: dict[str, Any] = {"type": "send", "id": client_id, "to": to, "media": media}
        if caption:
            frame["caption"] = caption
        return _encode(frame)

    def logout(self) -> str:
        """The ``logout`` frame (version 1): unpair the account; the gateway closes with 4401."""
        return _encode({"type": "logout"})

    def check(self, check_id: str, phones: list[str]) -> str:
        """The v1.1 ``check`` frame asking which of ``phones`` (at most 50)
        are on the network; sent only when :meth:`supports` says ``check``."""
        return _encode({"type": "check", "id": check_id, "phones": phones})

    def presence(self, to: str, state: str) -> str:
        """The v1.1 ``presence`` frame (``composing`` or ``paused`` toward
        ``to``); sent only when :meth:`supports` says ``presence``."""
        return _encode({"type": "presence", "to": to, "state": state})

    def pair_code_refusal(self) -> str | None:
        """Why a ``pair_code`` request may not be sent now, or None when it may.

        Only to a gateway that announced the frame, and only while it shows
        QR codes for an account not paired yet (section 6).
        """
        if self.hello is None or PAIR_CODE not in self.hello.features:
            return "the gateway did not announce pair_code: pair this instance by QR code"
        if not self.awaiting_pairing:
            return "the session is not awaiting pairing (no QR code shown, or the account is paired)"
        return None

    def pair_code(self, phone: str) -> str:
        """The ``pair_code`` frame asking a pairing code for ``phone``, as the text to write.

        ``phone`` must be E.164 (``+`` and 8-15 digits, no leading zero), or
        ValueError. The caller checks :meth:`pair_code_refusal` first; the
        request counts as unanswered from here until its answer.
        """
        if not E164_RE.fullmatch(phone):
            raise ValueError(f"not an E.164 phone number: {phone!r}")
        self.pair_code_pending = True
        return _encode({"type": "pair_code", "phone": phone})


# -- field readers ---------------------------------------------------------------------


def _encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def _utf8_size_over(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes in UTF-8, encoding it
    only when its length in characters cannot tell (1 to 4 bytes each)."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _string(value: Any, limit: int) -> str:
    """A field read as text: absent (or null) is empty, anything else its str()."""
    return "" if value is None else str(value)[:limit]


def _number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (booleans too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _message_id(frame: dict[str, Any]) -> str | None:
    value = frame.get("id")
    return value if isinstance(value, str) and value else None


def _hello(frame: dict[str, Any]) -> Hello:
    heartbeat = _number(frame.get("heartbeat_s"))
    return Hello(
        session_id=_string(frame.get("session_id"), 100),
        paired=frame.get("paired") is True,
        heartbeat_s=heartbeat if heartbeat is not None and heartbeat > 0 else None,
        features=_features(frame.get("features")),
    )


def _features(value: Any) -> frozenset[str]:
    """The announced features; anything but a short list of short names is none."""
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        return frozenset()
    if not all(isinstance(name, str) and 1 <= len(name) <= MAX_FEATURE_CHARS for name in value):
        return frozenset()
    return frozenset(value)


def _qr(frame: dict[str, Any]) -> Qr | None:
    code = frame.get("code")
    if not isinstance(code, str):
        return None
    return Qr(code=code[:500], expires_s=_number(frame.get("expires_s")) or 0.0)


def _paired(frame: dict[str, Any]) -> Paired:
    account = frame.get("account")
    return Paired(account=account[:20] if isinstance(account, str) else "")


def _ack(frame: dict[str, Any]) -> Ack | None:
    client_id = _message_id(frame)
    if client_id is None:
        return None
    return Ack(id=client_id, server_id=_string(frame.get("server_id"), 100))


def _nack(frame: dict[str, Any]) -> Nack | None:
    client_id = _message_id(frame)
    if client_id is None:
        return None
    retry_after = _number(frame.get("retry_after_s"))
    error = frame.get("error")
    return Nack(
        id=client_id,
        permanent=frame.get("permanent") is True,
        error=str(error)[:500] if error else "",
        retry_after_s=retry_after if retry_after is not None and retry_after >= 0 else None,
    )


def _receipt(frame: dict[str, Any]) -> Receipt | None:
    client_id = _message_id(frame)
    status = frame.get("status")
    if client_id is None:
        return None
    if status == "delivered":
        return Receipt(id=client_id, status="delivered")
    if status == "read":
        return Receipt(id=client_id, status="read")
    return None


def _inbound(frame: dict[str, Any]) -> Inbound | None:
    sender, text = frame.get("from"), frame.get("text")
    if not isinstance(sender, str) or not isinstance(text, str):
        return None
    return Inbound(server_id=_string(frame.get("server_id"), 100), sender=sender[:20], text=text[:4096])


def _error(frame: dict[str, Any]) -> Error:
    ref = frame.get("id")
    return Error(
        code=str(frame.get("code"))[:200],
        message=str(frame.get("message"))[:200],
        id=ref[:64] if isinstance(ref, str) else "",
    )


def _check_result(frame: dict[str, Any]) -> CheckResult | None:
    ref, results = frame.get("id"), frame.get("results")
    if not isinstance(ref, str) or not isinstance(results, dict):
        return None
    return CheckResult(
        id=ref[:64],
        results={k[:20]: v for k, v in results.items() if isinstance(k, str) and isinstance(v, bool)},
    )


_READERS: dict[str, Callable[[dict[str, Any]], Event | None]] = {
    "qr": _qr,
    "paired": _paired,
    "ack": _ack,
    "nack": _nack,
    "receipt": _receipt,
    "inbound": _inbound,
    "error": _error,
    "check_result": _check_result,
}
