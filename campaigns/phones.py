"""Phone numbers: what a tenant writes, normalised to E.164 with phonenumbers.

Accepted: an international number with ``+`` (``+55 11 99999-9999``), with
the ``00`` prefix (``0055...``), or bare digits of an international number
(``5511999999999``); a national number (``(11) 99999-9999``) only when a
region is given (``region="BR"``). The number must be *valid* for its
country by phonenumbers' metadata, not merely of a plausible length.
"""

from __future__ import annotations

import phonenumbers

MAX_INPUT = 40


class InvalidPhone(ValueError):
    """The text is not a valid phone number; ``str()`` says why, for a person."""


def normalise(raw: object, region: str | None = None) -> str:
    """``raw`` as E.164 (``+5511999999999``), or :class:`InvalidPhone`.

    ``region``: an ISO 3166 country code (``"BR"``) used to read numbers
    written without their country code; None or "" refuses them.
    """
    if not isinstance(raw, str):
        raise InvalidPhone("A phone number is a string, such as +5511999999999.")
    text = raw.strip()
    if not text:
        raise InvalidPhone("The phone number is empty.")
    if len(text) > MAX_INPUT:
        raise InvalidPhone(f"'{text[:MAX_INPUT]}…' is too long for a phone number.")
    region = (region or "").strip().upper() or None
    candidate = text
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    elif not candidate.startswith("+") and region is None:
        digits = "".join(ch for ch in candidate if ch.isdigit())
        if digits and digits == candidate.replace(" ", "").replace("-", ""):
            candidate = "+" + digits
        else:
            raise InvalidPhone(f"'{text}' is not an international number: start it with + and the country code.")
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"'{text}' is not a phone number: {_reason(exc)}") from None
    if not phonenumbers.is_valid_number(number):
        hint = "" if text.startswith(("+", "00")) or region else " (is the country code missing?)"
        raise InvalidPhone(f"'{text}' is not a valid phone number{hint}.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The regions phonenumbers knows, as ISO 3166 codes in capitals (BR, US, ...).
REGIONS = tuple(sorted(phonenumbers.SUPPORTED_REGIONS))


def is_region(code: str) -> bool:
    """Whether ``code`` is a region phonenumbers knows (``BR``, ``US``, ...)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


def _reason(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "it is not a number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "it cannot be read")
