"""Fetching a file by URL for a tenant, once, without reaching inside.

A tenant names a URL; the platform downloads it when the media is created
and keeps the copy (gateways are later sent the platform's own link). The
URL is a request to reach whatever the platform can reach, so it goes
through the policy of outbound requests (:mod:`monitoring.outbound`, the
same as for webhooks): ``http`` or ``https``, no credentials, every address
the host resolves to public, the connection pinned to the addresses that
were checked, no redirects, no proxies. Then a time limit for the whole
download and a size cap, on the ``Content-Length`` and while reading.

``BLAST_MEDIA_FETCH_PRIVATE`` lifts the address rules (not the form
rules), for files on the platform's own network and for the tests, whose
servers listen on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from dataclasses import dataclass

from django.conf import settings

from monitoring import outbound

CHUNK = 64 * 1024
MAX_URL = 2048


class FetchRefused(ValueError):
    """Why the URL was not fetched; the message is for the client."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    filename: str  # the last part of the URL's path


def fetch(url: str, max_bytes: int) -> Fetched:
    """Download ``url`` (at most ``max_bytes``) or raise :class:`FetchRefused`."""
    if len(url) > MAX_URL:
        raise FetchRefused(f"The URL may be at most {MAX_URL} characters.")
    allow = bool(settings.BLAST_MEDIA_FETCH_PRIVATE)
    timeout = float(settings.BLAST_MEDIA_FETCH_TIMEOUT_S)
    try:
        target = outbound.parse(url, allow)
        addresses = outbound.resolve(target, allow)
    except outbound.Refused as exc:
        message = exc.message.replace("A webhook URL", "The URL")
        if exc.message == outbound.REFUSED:
            message = "The URL's host is on a private, loopback or reserved address; it is not fetched."
        raise FetchRefused(message) from None
    except (OSError, UnicodeError, ValueError):
        raise FetchRefused("The URL's host could not be resolved.") from None
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = outbound.PinnedHTTPSConnection(target.host, target.port, addresses, timeout)
    else:
        connection = outbound.PinnedHTTPConnection(target.host, target.port, addresses, timeout)
    deadline = time.monotonic() + timeout
    try:
        connection.request("GET", target.path, headers={"User-Agent": "blast-media-fetch", "Accept": "*/*"})
        reply = connection.getresponse()
        if 300 <= reply.status < 400:
            raise FetchRefused(f"The URL answered {reply.status} (a redirect): give the final URL.")
        if reply.status != 200:
            raise FetchRefused(f"The URL answered {reply.status}, not 200.")
        declared = reply.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefused(f"The file is {declared} bytes; at most {max_bytes} are accepted.")
        body = bytearray()
        while chunk := reply.read(CHUNK):
            body.extend(chunk)
            if len(body) > max_bytes:
                raise FetchRefused(f"The file is larger than {max_bytes} bytes.")
            if time.monotonic() > deadline:
                raise FetchRefused(f"The download took longer than {timeout:g} s.")
    except TimeoutError:
        raise FetchRefused(f"The URL did not answer within {timeout:g} s.") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, FetchRefused):
            raise
        raise FetchRefused("The URL could not be fetched: the connection failed.") from None
    finally:
        connection.close()
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    return Fetched(bytes(body), name)
