"""Outbound HTTP to URLs that users give: tenant status webhooks
(:mod:`campaigns.webhooks`) and alert webhooks (:mod:`monitoring.delivery`).

Such a URL must not become a way into the platform's own network. The
policy, applied when a URL is saved (:func:`url_problem`,
:func:`validate_public_url`) and again on every request (:func:`post`):

- ``http`` or ``https``, a host, no user name or password (``user:pass@``),
  a port from 1 to 65535, no spaces, control characters or backslashes;
- a host name is turned into its ASCII form (IDNA) before anything else, so
  that look-alike dots and digits are judged as what they resolve as; an
  IPv4 address is written as four decimal numbers: the other spellings that
  resolvers accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are
  refused rather than interpreted;
- every address is globally routable: :func:`address_problem` refuses
  loopback, private, shared (CGNAT), link-local, multicast, documentation,
  benchmarking and reserved ranges, IPv6 outside global unicast, Teredo, and
  IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) whose IPv4
  address is refused. Local names (``localhost``, ``*.local``, one-label
  names) are refused without DNS.

:func:`post` resolves the host once, checks every address it gets (one
refused address refuses the request), then connects to those very
addresses: the name is never resolved again, so an answer that changes
between the check and the connection (DNS rebinding) reaches nothing. The
request still carries the host name (``Host`` header, TLS SNI, certificate
verification against the name). Redirects are not followed, and proxies from
the environment are not used.

What reaches the user (the tenant, tenant staff) is a fixed summary
(:data:`REFUSED`, :data:`NOT_FOUND`, :data:`CONNECTION_FAILED`,
:data:`TIMED_OUT`, :data:`TLS_FAILED`, :data:`BAD_RESPONSE`, ``HTTP <code>``),
never the network's own error text; a reply body is read only from an address
that passed the policy. :attr:`Response.detail` says more, for the operators'
logs, without the URL (a URL can carry a credential).

``BLAST_WEBHOOK_ALLOW_PRIVATE`` turns the address checks off (the form checks
stay): for development and tests, where receivers listen on 127.0.0.1. Never
in production.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EXCERPT_CHARS = 500
READ_BYTES = 4096
# The addresses of one name tried in turn, sharing the timeout.
MAX_ADDRESSES = 4

# What the user sees of a failed request.
REFUSED = "refused by address policy"
NOT_FOUND = "host not found"
CONNECTION_FAILED = "connection failed"
TIMED_OUT = "timed out"
TLS_FAILED = "TLS handshake failed"
BAD_RESPONSE = "invalid HTTP response"

# Why a URL may not be saved.
BAD_FORM = "Enter an http:// or https:// URL."
BAD_CHARACTERS = "A webhook URL may not contain spaces, control characters or backslashes."
USERINFO = "A webhook URL may not carry a user name or password (user:pass@host)."
BAD_PORT = "A webhook URL's port is a number from 1 to 65535."
BAD_HOST = "A webhook URL needs a valid host name."
BAD_IPV4 = "Write an IPv4 address as four decimal numbers (a.b.c.d)."
NOT_PUBLIC = "A webhook URL must point to a public address, not a private or loopback one."

DEFAULT_PORTS = {"http": 80, "https": 443}
LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".home.arpa", ".lan", ".intranet")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
# Characters kept as they are in a request target; anything else (non-ASCII)
# is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?[]"


# -- the address policy (pure) ---------------------------------------------------------

_net4 = ipaddress.IPv4Network
_net6 = ipaddress.IPv6Network

# IANA IPv4 Special-Purpose Address Registry (not globally reachable) and
# multicast. Judged here, not by ``ipaddress.is_global``, whose answers vary
# between Python releases.
IPV4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_net4("0.0.0.0/8"), "this network"),
    (_net4("10.0.0.0/8"), "private"),
    (_net4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_net4("127.0.0.0/8"), "loopback"),
    (_net4("169.254.0.0/16"), "link-local"),
    (_net4("172.16.0.0/12"), "private"),
    (_net4("192.0.0.0/24"), "IETF protocol assignments"),
    (_net4("192.0.2.0/24"), "documentation"),
    (_net4("192.88.99.0/24"), "6to4 relay anycast"),
    (_net4("192.168.0.0/16"), "private"),
    (_net4("198.18.0.0/15"), "benchmarking"),
    (_net4("198.51.100.0/24"), "documentation"),
    (_net4("203.0.113.0/24"), "documentation"),
    (_net4("224.0.0.0/4"), "multicast"),
    (_net4("240.0.0.0/4"), "reserved"),
)

IPV6_GLOBAL_UNICAST = _net6("2000::/3")
IPV6_MAPPED = _net6("::ffff:0:0/96")
IPV6_NAT64 = _net6("64:ff9b::/96")
IPV6_6TO4 = _net6("2002::/16")
# Outside global unicast every address is refused; these only name why.
IPV6_NAMED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_net6("::/128"), "unspecified"),
    (_net6("::1/128"), "loopback"),
    (_net6("::/96"), "IPv4-compatible"),
    (_net6("64:ff9b:1::/48"), "local-use NAT64"),
    (_net6("100::/64"), "discard-only"),
    (_net6("fc00::/7"), "unique local (private)"),
    (_net6("fe80::/10"), "link-local"),
    (_net6("fec0::/10"), "site-local"),
    (_net6("ff00::/8"), "multicast"),
)
# Inside global unicast, the ranges that are not globally reachable.
IPV6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_net6("2001::/32"), "Teredo"),
    (_net6("2001::/23"), "IETF protocol assignments"),
    (_net6("2001:db8::/32"), "documentation"),
    (_net6("3fff::/20"), "documentation"),
)


def _ipv4_problem(address: ipaddress.IPv4Address) -> str:
    for network, label in IPV4_REFUSED:
        if address in network:
            return f"{label} ({network})"
    return ""


def address_problem(address: Address) -> str:
    """Why ``address`` may not be connected to (a short label naming the
    range, for operators), or "" when it is globally routable."""
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_problem(address)
    embedded: tuple[str, ipaddress.IPv4Address] | None = None
    if address in IPV6_MAPPED:
        embedded = ("IPv4-mapped", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    elif address in IPV6_NAT64:
        embedded = ("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    elif address in IPV6_6TO4:
        embedded = ("6to4", ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF))
    if embedded is not None:
        kind, ipv4 = embedded
        problem = _ipv4_problem(ipv4)
        return f"{kind} {ipv4}: {problem}" if problem else ""
    if address not in IPV6_GLOBAL_UNICAST:
        for network, label in IPV6_NAMED:
            if address in network:
                return f"{label} ({network})"
        return f"outside global unicast ({IPV6_GLOBAL_UNICAST})"
    for network, label in IPV6_REFUSED:
        if address in network:
            return f"{label} ({network})"
    return ""


def connect_address(address: Address) -> Address:
    """The address a socket connects to: an IPv4-mapped IPv6 address as the
    IPv4 address it maps (the same host, without relying on dual-stack sockets)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def local_name(host: str) -> bool:
    """Whether the ASCII host name ``host`` names this machine or a local
    network by its form alone (no DNS): ``localhost``, a local suffix, or a
    single label."""
    return host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host


# -- URLs (pure) ---------------------------------------------------------------------------


class Refused(ValueError):
    """A URL or an address the policy refuses. ``message`` is for the user
    who gave the URL; ``detail`` for the operators' logs."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


@dataclass(frozen=True)
class Target:
    """A checked URL: what to resolve, where to connect, what to send."""

    scheme: str
    host: str  # ASCII: IDNA-encoded, lower case, no trailing dot, no brackets
    port: int
    path: str  # the request target: path and query, at least "/"
    address: Address | None  # the host when it is an address literal


def _ascii_host(name: str) -> str:
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or "%" in name:
        raise Refused(BAD_HOST)
    try:
        # IDNA maps look-alike dots and full-width digits to ASCII, so that
        # "127。0。0。1" is judged as the 127.0.0.1 a resolver would see.
        ascii_name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise Refused(BAD_HOST) from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise Refused(BAD_HOST)
    return ascii_name


def _split_netloc(netloc: str) -> tuple[str, str, bool]:
    """(host, port text, bracketed) of a netloc without userinfo."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise Refused(BAD_HOST)
        rest = netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise Refused(BAD_HOST)
        return netloc[1:end], rest[1:], True
    host, _, port = netloc.partition(":")
    if ":" in port:
        raise Refused(BAD_HOST)  # an IPv6 address without brackets
    return host, port, False


def parse(url: str, allow_private: bool = False) -> Target:
    """Check ``url`` as written (no DNS) and return what to request; raise
    :class:`Refused` with a message for the user. ``allow_private`` lifts the
    address rules, not the form rules."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise Refused(BAD_CHARACTERS)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Refused(BAD_FORM) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise Refused(BAD_FORM)
    if "@" in parts.netloc:
        raise Refused(USERINFO)
    name, port_text, bracketed = _split_netloc(parts.netloc)
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise Refused(BAD_PORT)
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[scheme]

    address: Address | None
    if bracketed:
        if "%" in name:
            raise Refused(BAD_HOST)  # a zone (fe80::1%eth0) names a local link
        try:
            address = ipaddress.IPv6Address(name)
        except ValueError:
            raise Refused(BAD_HOST) from None
        host = str(address)
    else:
        host = _ascii_host(name)
        if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
            # A name ending in a number is an IPv4 address to resolvers and
            # browsers, in whatever base: only the plain form is accepted.
            try:
                address = ipaddress.IPv4Address(host)
            except ValueError:
                raise Refused(BAD_IPV4) from None
        else:
            address = None
    if not allow_private:
        if address is not None:
            problem = address_problem(address)
            if problem:
                raise Refused(NOT_PUBLIC, f"address {address}: {problem}")
        elif local_name(host):
            raise Refused(NOT_PUBLIC, "a local host name")
    try:
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE)
    except UnicodeError:  # a lone surrogate: not text a URL can carry
        raise Refused(BAD_FORM) from None
    return Target(scheme, host, port, path, address)


def allow_private_targets() -> bool:
    """``BLAST_WEBHOOK_ALLOW_PRIVATE``: development and tests only."""
    return bool(getattr(settings, "BLAST_WEBHOOK_ALLOW_PRIVATE", False))


def url_problem(url: str, allow_private: bool | None = None) -> str:
    """Why ``url`` may not be saved as a webhook target, or "" (no DNS: the
    addresses a name resolves to are checked on every request)."""
    try:
        parse(url, allow_private_targets() if allow_private is None else allow_private)
    except Refused as exc:
        return exc.message
    return ""


def validate_public_url(value: str) -> None:
    """Model field validator: :func:`url_problem` as a ``ValidationError``."""
    problem = url_problem(value)
    if problem:
        raise ValidationError(problem, code="webhook_url")


# -- the request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """The outcome of one request. ``error`` is a fixed summary that users may
    see ("" on a 2xx); ``excerpt`` the start of a reply body; ``detail`` what
    operators' logs may say about a failure."""

    status_code: int | None
    excerpt: str
    error: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def resolve(target: Target, allow_private: bool = False) -> list[Address]:
    """The addresses to connect to for ``target``, resolved once, every one
    checked; :class:`Refused` when any is refused (``message`` is
    :data:`REFUSED`), :class:`OSError` when the name does not resolve."""
    if target.address is not None:
        found: list[Address] = [target.address]
    else:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        if not found:
            raise socket.gaierror("no address")
    if not allow_private:
        refused = [(address, problem) for address in found if (problem := address_problem(address))]
        if refused:
            address, problem = refused[0]
            raise Refused(REFUSED, f"{len(refused)} of {len(found)} resolved addresses refused, {address}: {problem}")
    return [connect_address(address) for address in found]


def _connect(addresses: list[Address], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers; the
    timeout is shared between them. Never resolves a name."""
    deadline = time.monotonic() + timeout
    tried = addresses[:MAX_ADDRESSES]
    last_error: OSError = TimeoutError("no address answered in time")
    for index, address in enumerate(tried):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining / (len(tried) - index))
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last_error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``host`` that connects to ``addresses`` only."""

    def __init__(self, host: str, port: int, addresses: list[Address], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_addresses = addresses
        self.pinned_timeout = timeout

    def connect(self) -> None:
        self.sock = _connect(self.pinned_addresses, self.port, self.pinned_timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``host`` that connects to ``addresses`` only;
    SNI and certificate verification are for ``host``."""

    def __init__(
        self, host: str, port: int, addresses: list[Address], timeout: float, context: ssl.SSLContext | None = None
    ) -> None:
        self.pinned_context = context or ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.pinned_context)
        self.pinned_addresses = addresses
        self.pinned_timeout = timeout

    def connect(self) -> None:
        sock = _connect(self.pinned_addresses, self.port, self.pinned_timeout)
        try:
            self.sock = self.pinned_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _failure(exc: BaseException, addresses: list[Address], port: int) -> Response:
    where = ", ".join(str(address) for address in addresses[:MAX_ADDRESSES])
    detail = f"{type(exc).__name__}: {exc}"[:300] + f" (to {where}, port {port})"
    if isinstance(exc, TimeoutError):
        error = TIMED_OUT
    elif isinstance(exc, ssl.SSLError):
        error = TLS_FAILED
    elif isinstance(exc, http.client.HTTPException):
        error = BAD_RESPONSE
    else:
        error = CONNECTION_FAILED
    return Response(None, "", error, detail)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    *,
    allow_private: bool | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``body`` to the user-given ``url`` under the policy above;
    never raises for a refused URL or a network error. ``context`` replaces
    the default TLS context (system CAs, hostname checked)."""
    allow = allow_private_targets() if allow_private is None else allow_private
    try:
        target = parse(url, allow)
        addresses = resolve(target, allow)
    except Refused as exc:
        return Response(None, "", REFUSED, exc.detail)
    except (OSError, UnicodeError, ValueError) as exc:
        return Response(None, "", NOT_FOUND, f"{type(exc).__name__}: {exc}"[:300])
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = PinnedHTTPSConnection(target.host, target.port, addresses, timeout, context)
    else:
        connection = PinnedHTTPConnection(target.host, target.port, addresses, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        reply = connection.getresponse()
        text = reply.read(READ_BYTES).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _failure(exc, addresses, target.port)
    finally:
        connection.close()
    status = reply.status
    return Response(status, text[:EXCERPT_CHARS], "" if 200 <= status < 300 else f"HTTP {status}")
