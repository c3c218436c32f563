"""`python -m blast.web`: daphne, with its access log redacted and request bodies bounded.

Takes daphne's own command line (`python -m blast.web -b 127.0.0.1 -p 8000
blast.asgi:application`); the differences from plain daphne:

- query-string tokens and bearer credentials never reach the access log;
- a request body larger than ``BLAST_WEB_MAX_BODY_BYTES`` is refused with a
  short JSON 413 before it is stored: on its Content-Length as soon as the
  headers are in, and for a chunked body as soon as what has arrived passes
  the limit. The rest of a refused body is read and dropped (so that the
  client, still sending, gets to read the 413), for at most
  ``DISCARD_SECONDS``, then the connection is closed;
- Twisted no longer parses form and multipart bodies into ``request.args``
  (daphne never reads them; the parse held the event loop and several copies
  of the body in memory);
- a chunked body that is accepted reaches the application with the
  Content-Length of what was received, since Django reads a body by its
  Content-Length and would otherwise see it empty;
- every status has its standard reason phrase on the status line: Twisted
  knows none for 429 and a few others and wrote ``429 Unknown Status``.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import daphne.cli
import daphne.server
from daphne.http_protocol import HTTPFactory, WebRequest
from django.conf import settings
from twisted.internet.base import DelayedCall
from twisted.web import http

from blast.logs import _redacting_access_log

# Twisted's table of reason phrases predates 429 (and 428, 431, 451, ...).
for _status in HTTPStatus:
    http.RESPONSES.setdefault(_status.value, _status.phrase.encode("ascii"))

# How long the rest of a refused body is read and dropped before the
# connection is closed regardless.
DISCARD_SECONDS = 30.0


def max_body_bytes() -> int:
    """The largest request body the web process accepts (``BLAST_WEB_MAX_BODY_BYTES``)."""
    return int(settings.BLAST_WEB_MAX_BODY_BYTES)


def too_large_response(limit: int) -> bytes:
    """The whole HTTP response that refuses a body above ``limit`` bytes."""
    body = json.dumps({"detail": f"The request body is larger than {limit} bytes."}).encode()
    head = (
        "HTTP/1.1 413 Content Too Large\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


class BoundedWebRequest(WebRequest):  # type: ignore[misc]
    """daphne's request, refusing bodies above the limit before buffering them.

    Twisted calls ``gotLength`` once the headers are in (``None`` for a
    chunked body), ``handleContentChunk`` for every piece of the body and
    ``requestReceived`` when the body is complete; daphne's ``process`` then
    hands it to the application. A refused request never reaches
    ``process``.
    """

    content: Any  # Twisted's body file, None until the length is known

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        self._limit = max_body_bytes()
        self._received = 0
        self._streamed = False
        self._refused = False
        self._discard_deadline: DelayedCall | None = None
        super().__init__(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        self._streamed = length is None
        if length is not None and length > self._limit:
            self._refuse(expecting_body=not self._expects_continue())
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._refuse(expecting_body=True)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            # The whole refused body has been read: the 413 is out, close.
            self._close()
            return
        if self._streamed and self.content is not None:
            # The body is de-chunked: describe it as what it now is.
            self.requestHeaders.removeHeader(b"Transfer-Encoding")
            self.requestHeaders.setRawHeaders(b"Content-Length", [b"%d" % self.content.tell()])
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        if self._discard_deadline is not None and self._discard_deadline.active():
            self._discard_deadline.cancel()
        super().connectionLost(reason)

    def _expects_continue(self) -> bool:
        expect = self.requestHeaders.getRawHeaders(b"Expect") or []
        return any(value.lower() == b"100-continue" for value in expect)

    def _refuse(self, expecting_body: bool) -> None:
        """Answer 413 now; drop the body still to come, or close at once if none will."""
        self._refused = True
        channel = self.channel
        if self.content is not None:
            self.content.close()
            self.content = None
        # No "100 Continue" after the 413 (Twisted sends it after gotLength).
        self.requestHeaders.removeHeader(b"Expect")
        channel.persistent = False
        response = too_large_response(self._limit)
        channel.transport.write(response)
        self._log_refusal(channel, len(response))
        if expecting_body:
            self._discard_deadline = channel.callLater(DISCARD_SECONDS, channel.transport.abortConnection)
        else:
            self._close()

    def _close(self) -> None:
        if self.channel is not None:
            self.channel.loseConnection()

    def _log_refusal(self, channel: http.HTTPChannel, size: int) -> None:
        # The request line is on the channel until the body is complete.
        method = getattr(channel, "_command", b"-")
        uri = getattr(channel, "_path", b"-")
        client = f"{self.client.host}:{self.client.port}" if hasattr(self.client, "host") else None
        self.server.log_action(
            "http",
            "complete",
            {
                "path": uri.decode("ascii", "replace"),
                "status": 413,
                "method": method.decode("ascii", "replace"),
                "client": client,
                "time_taken": 0.0,
                "size": size,
            },
        )


class BoundedHTTPFactory(HTTPFactory):  # type: ignore[misc]
    """daphne's HTTP factory, building :class:`BoundedWebRequest` requests."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedWebRequest
        return protocol


def main() -> None:
    daphne.cli.AccessLogGenerator = _redacting_access_log()
    daphne.server.HTTPFactory = BoundedHTTPFactory
    daphne.cli.CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
