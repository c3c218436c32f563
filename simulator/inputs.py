"""Control input: strict reads of a JSON body and the errors they raise.

A control call that cannot be served raises :class:`BadRequest` (400),
:class:`NotFound` (404) or :class:`Conflict` (409) with a message for the
caller; the control API turns each into a JSON answer, never a 500.
:class:`Params` rejects unknown fields (to catch typos) and values of the
wrong type or range; :func:`parse_close_code` reads a close code given as a
number, a PROTOCOL.md reason name or ``"abort"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from simulator.codes import GATEWAY_CLOSE_CODES
from simulator.protocol import ABORT, E164_RE, valid_close_code


class BadRequest(Exception):
    """Control input that is not acceptable: answered with 400 and this message."""


class NotFound(Exception):
    """A control call about an instance the simulator does not know: 404."""


class Conflict(Exception):
    """A control call that cannot act in the instance's current state: 409."""


def parse_close_code(value: Any, default: int, *, name: str = "code") -> int:
    """A close code from control input: a number, a reason name or ``"abort"``.

    Reason names are those of PROTOCOL.md section 4, as
    :data:`simulator.codes.GATEWAY_CLOSE_CODES` lists them
    (``"replaced"`` -> 4440, ...). 1006 and ``"abort"`` both return
    :data:`ABORT`: drop TCP without a close frame.
    """
    if value is None:
        return default
    if isinstance(value, str):
        if value == "abort":
            return ABORT
        try:
            return GATEWAY_CLOSE_CODES[value]
        except KeyError:
            names = ", ".join(sorted(GATEWAY_CLOSE_CODES))
            raise BadRequest(f"{name} must be a close code, 'abort' or one of: {names}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer close code")
    if value != ABORT and not valid_close_code(value):
        raise BadRequest(f"{name} {value} is not a close code that can be sent (1000-1003, 1007-1014, 3000-4999)")
    return int(value)


class Params:
    """Typed, strict reads from one JSON object of control input."""

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        self.data = data

    def number(self, name: str, default: float | None, *, minimum: float | None = None) -> float | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadRequest(f"{name} must be a finite number")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{name} must be at least {minimum}")
        return float(value)

    def integer(
        self, name: str, default: int | None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be an integer")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise BadRequest(f"{name} must be at most {maximum}")
        return int(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise BadRequest(f"{name} must be true or false")
        return value

    def string(self, name: str, default: str | None, *, max_length: int = 4096) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= max_length:
            raise BadRequest(f"{name} must be a string of 1-{max_length} characters")
        return value

    def phone(self, name: str, default: str | None) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not E164_RE.fullmatch(value):
            raise BadRequest(f"{name} must be an E.164 number: + then 8-15 digits")
        return value
