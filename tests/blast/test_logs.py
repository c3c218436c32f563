"""Log redaction: a secret is masked however its name or value is encoded,
and everything else in the line stays as it was written."""

from __future__ import annotations

import pytest

from blast.logs import redact

S = "blast_0123456789ab_S3CRET-xyz"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # As written.
        (f"GET /x?access_token={S}&x=1 HTTP/1.1", "GET /x?access_token=[redacted]&x=1 HTTP/1.1"),
        (f"/x?token={S}", "/x?token=[redacted]"),
        (f"/x?api_key={S}", "/x?api_key=[redacted]"),
        (f"/x?KEY={S}", "/x?KEY=[redacted]"),
        # A percent-encoded name: the server decodes it to access_token.
        (f"/x?access_toke%6E={S}&x=1", "/x?access_toke%6E=[redacted]&x=1"),
        (f"/x?%61ccess%5Ftoken={S}", "/x?%61ccess%5Ftoken=[redacted]"),
        (f"/x?ACCESS_TOKE%6e={S}", "/x?ACCESS_TOKE%6e=[redacted]"),
        (f"/x?access_token+={S}", "/x?access_token+=[redacted]"),
        # Encoded twice.
        (f"/x?access_toke%256E={S}", "/x?access_toke%256E=[redacted]"),
        # An encoded value is masked whole, escapes included.
        ("/x?token=ab%2Bcd%3D%3D&y=2", "/x?token=[redacted]&y=2"),
        # A URL carried, encoded, inside another parameter.
        (f"/login?next=%2Fapi%3Faccess_token%3D{S}%26x%3D1", "/login?next=%2Fapi%3Faccess_token%3D[redacted]%26x%3D1"),
        (f"/login?next=%252Fapi%253Ftoken%253D{S}", "/login?next=%252Fapi%253Ftoken%253D[redacted]"),
        # Bearer credentials, also encoded.
        (f"header was Bearer {S}", "header was Bearer [redacted]"),
        (f"Authorization: bearer  {S}", "Authorization: bearer  [redacted]"),
        (f"/x?auth=Bearer%20{S}&y=1", "/x?auth=Bearer%20[redacted]&y=1"),
        (f"/x?auth=Bearer+{S}", "/x?auth=Bearer+[redacted]"),
        (f"/x?auth=Bearer%2520{S}", "/x?auth=Bearer%2520[redacted]"),
        # Two secrets on one line, one inside the other's reach.
        (f"/x?token={S}&h=Bearer%20{S}", "/x?token=[redacted]&h=Bearer%20[redacted]"),
        (f"/x?token=Bearer%20{S}", "/x?token=[redacted]%20[redacted]"),
    ],
)
def test_secrets_are_masked_however_they_are_encoded(line: str, expected: str) -> None:
    assert redact(line) == expected
    assert S not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "GET /health/live HTTP/1.1",
        "GET /api/v1/instances?status=connected&page=2 HTTP/1.1",
        "100% done, 50%2 left, %zz",
        "/x?name=%E2%9C%93&city=S%C3%A3o+Paulo",
        "",
    ],
)
def test_lines_without_secrets_are_left_as_they_are(line: str) -> None:
    assert redact(line) == line
