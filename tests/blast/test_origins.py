"""The WebSocket Origin rule: the site's own scheme, host and port, or a
trusted origin; nothing else."""

from __future__ import annotations

import pytest

from blast.origins import origin_allowed

HOSTS = ["127.0.0.1", "localhost", "[::1]", ".example.com"]


def allowed(origin: str | None, host: str | None, secure: bool | None = None, trusted: list[str] | None = None) -> bool:
    return origin_allowed(origin, host, secure=secure, allowed_hosts=HOSTS, trusted_origins=trusted or [])


@pytest.mark.parametrize(
    ("origin", "host", "secure"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", None),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://localhost", "localhost", None),
        ("http://localhost:80", "localhost", None),
        ("https://blast.example.com", "blast.example.com", True),
        ("https://blast.example.com", "blast.example.com:443", None),
        ("https://BLAST.example.com", "blast.example.COM", None),
        ("http://[::1]:8000", "[::1]:8000", None),
    ],
)
def test_the_sites_own_origin_is_accepted(origin: str, host: str, secure: bool | None) -> None:
    assert allowed(origin, host, secure)


@pytest.mark.parametrize(
    ("origin", "host", "secure"),
    [
        # Same host, another port: another origin (another app on the machine).
        ("http://127.0.0.1:8001", "127.0.0.1:8000", None),
        ("http://127.0.0.1", "127.0.0.1:8000", None),
        ("http://127.0.0.1:8000", "127.0.0.1", None),
        ("http://blast.example.com", "blast.example.com:443", None),
        ("http://blast.example.com:443", "blast.example.com", None),
        ("http://[::1]:8001", "[::1]:8000", None),
        # Another host, or a host the site does not serve.
        ("https://evil.example", "127.0.0.1", None),
        ("http://evil.test:8000", "evil.test:8000", None),
        ("http://localhost:8000", "127.0.0.1:8000", None),
        # The scheme, when the server says which one it is.
        ("http://blast.example.com", "blast.example.com", True),
        ("https://blast.example.com", "blast.example.com", False),
        # Nothing to compare, or not an origin.
        (None, "127.0.0.1", None),
        ("", "127.0.0.1", None),
        ("null", "127.0.0.1", None),
        ("http://127.0.0.1:8000", None, None),
        ("ws://127.0.0.1:8000", "127.0.0.1:8000", None),
        ("http://127.0.0.1:8000/dashboard/", "127.0.0.1:8000", None),
        ("http://user@127.0.0.1:8000", "127.0.0.1:8000", None),
        ("http://127.0.0.1:99999", "127.0.0.1:99999", None),
    ],
)
def test_any_other_origin_is_refused(origin: str | None, host: str | None, secure: bool | None) -> None:
    assert not allowed(origin, host, secure)


def test_a_trusted_origin_is_accepted_whatever_host_the_proxy_sends() -> None:
    trusted = ["https://blast.example.com", "https://*.ops.example.com:8443"]
    assert allowed("https://blast.example.com", "127.0.0.1:8000", trusted=trusted)
    assert allowed("https://eu.ops.example.com:8443", "127.0.0.1:8000", trusted=trusted)
    # Its port and scheme count as well.
    assert not allowed("https://blast.example.com:8443", "127.0.0.1:8000", trusted=trusted)
    assert not allowed("http://blast.example.com", "127.0.0.1:8000", trusted=trusted)
    assert not allowed("https://eu.ops.example.com", "127.0.0.1:8000", trusted=trusted)
