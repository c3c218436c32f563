"""Which page may open a browser WebSocket: the Origin check of the handshake.

A browser sends its cookies with a WebSocket handshake to any site, whatever
page asks, so a session-authenticated socket (the live dashboard) must refuse
pages of other origins. The rule is Django's CSRF check of a POST's Origin:

- the Origin is the site the browser connected to: same host and port as
  the handshake's ``Host`` (a host in ``ALLOWED_HOSTS``), and same scheme when
  the server says which one it is; or
- the Origin is listed in ``CSRF_TRUSTED_ORIGINS``, exactly
  (``https://blast.example.com``, ports count) or as subdomains
  (``https://*.example.com``).

The scheme comes, as for Django, from ``SECURE_PROXY_SSL_HEADER`` when it is
set and present, else from the ASGI scope; daphne puts none in a WebSocket
scope, and then an ``http`` or ``https`` Origin may match, each with its own
default port (``http://host`` is port 80, never 443).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# ALLOWED_HOSTS when it is empty and DEBUG is on, as Django's get_host().
_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


def origin_allowed(
    origin: str | None,
    host: str | None,
    *,
    secure: bool | None,
    allowed_hosts: Sequence[str],
    trusted_origins: Sequence[str] = (),
) -> bool:
    """Whether a handshake with this ``Origin`` and ``Host`` may proceed.

    ``secure`` is whether the browser connected over TLS, ``None`` when the
    server does not say.
    """
    if not origin:
        return False
    try:
        parsed = urlsplit(origin.strip().lower())
        parsed.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    if parsed.scheme not in _DEFAULT_PORTS or parsed.path or parsed.query or parsed.fragment:
        return False
    origin_domain, origin_port = split_domain_port(parsed.netloc)
    if not origin_domain:
        return False
    if _trusted(parsed.scheme, parsed.netloc, trusted_origins):
        return True
    if secure is not None and parsed.scheme != ("https" if secure else "http"):
        return False
    if not host:
        return False
    host_domain, host_port = split_domain_port(host.strip())
    if not host_domain or not validate_host(host_domain, allowed_hosts):
        return False
    default_port = _DEFAULT_PORTS[parsed.scheme]
    return origin_domain == host_domain and (origin_port or default_port) == (host_port or default_port)


def _trusted(scheme: str, netloc: str, trusted_origins: Sequence[str]) -> bool:
    for pattern in trusted_origins:
        trusted = urlsplit(pattern.strip().lower())
        if trusted.scheme != scheme:
            continue
        if "*" in trusted.netloc:
            if is_same_domain(netloc, trusted.netloc.lstrip("*")):
                return True
        elif trusted.netloc == netloc:
            return True
    return False


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    """The header's value; ``None`` when it is missing or sent more than once."""
    values = [value for key, value in scope.get("headers", []) if key.lower() == name]
    if len(values) != 1:
        return None
    return bytes(values[0]).decode("latin-1")


def _secure(scope: dict[str, Any]) -> bool | None:
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        header_name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        value = _header(scope, header_name)
        if value is not None:
            return bool(value.split(",", 1)[0].strip() == secure_value)
    scheme = scope.get("scheme")
    if scheme in ("wss", "https"):
        return True
    if scheme in ("ws", "http"):
        return False
    return None


class SameOriginValidator:
    """ASGI middleware for WebSocket routes: a handshake whose Origin fails
    :func:`origin_allowed` is denied (403) before the application sees it."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards WebSocket connections")
        host = None
        if getattr(settings, "USE_X_FORWARDED_HOST", False):
            host = _header(scope, b"x-forwarded-host")
        if host is None:
            host = _header(scope, b"host")
        allowed_hosts = settings.ALLOWED_HOSTS or (_DEBUG_HOSTS if settings.DEBUG else [])
        if origin_allowed(
            _header(scope, b"origin"),
            host,
            secure=_secure(scope),
            allowed_hosts=allowed_hosts,
            trusted_origins=getattr(settings, "CSRF_TRUSTED_ORIGINS", []),
        ):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
