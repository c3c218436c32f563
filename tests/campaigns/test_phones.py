"""Phone numbers normalised to E.164, or refused with a reason."""

from __future__ import annotations

import pytest

from campaigns.phones import InvalidPhone, normalise


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+55 11 99999-9999", None, "+5511999999999"),
        ("+55 (11) 99999 9999", None, "+5511999999999"),
        ("0055 11 99999 9999", None, "+5511999999999"),
        ("5511999999999", None, "+5511999999999"),
        ("(11) 99999-9999", "BR", "+5511999999999"),
        ("(11) 99999-9999", "br", "+5511999999999"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("  +12015550123 ", None, "+12015550123"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalise(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("", None, "The phone number is empty."),
        ("(11) 99999-9999", None, "is not an international number: start it with + and the country code"),
        ("+1 555 000 0001", None, "'+1 555 000 0001' is not a valid phone number."),
        ("+999 123456", None, "unknown country code"),
        ("call me", None, "is not an international number"),
        ("+" + "1" * 60, None, "too long for a phone number"),
        (5511999999999, None, "A phone number is a string"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(raw: object, region: str | None, message: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise(raw, region)
    assert message in str(caught.value)
