"""API-key authentication for the tenant API.

``Authorization: Bearer <key>`` everywhere; the seed's endpoints also take
the key from an ``access_token`` query parameter. A request that names no
key, a malformed, unknown or revoked key is answered 401 (JSON, with
``WWW-Authenticate: Bearer``). Every view scopes its queries to
``request.user.tenant``.

Failed keys are counted per client address (:mod:`instances.throttle`): an
address that sent ``BLAST_AUTH_FAILURE_LIMIT`` bad keys within
``BLAST_AUTH_FAILURE_WINDOW_S`` is answered 429 with ``Retry-After``, without
its keys being looked up, until the window ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from api.models import ApiKey, split_key
from instances import throttle
from instances.models import Tenant

INVALID_KEY = "Invalid API key."
REVOKED_KEY = "This API key has been revoked."


@dataclass(frozen=True)
class TenantClient:
    """``request.user`` of a request authenticated with an API key."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    @property
    def tenant(self) -> Tenant:
        return self.api_key.tenant

    @property
    def actor(self) -> str:
        return self.api_key.actor

    def __str__(self) -> str:
        return self.actor


def _address(request: Request) -> list[throttle.Subject]:
    address = throttle.client_address(request.META)
    return [throttle.Subject("address", address, int(settings.BLAST_AUTH_FAILURE_LIMIT))]


def authenticate_key_from(request: Request, raw: str) -> tuple[TenantClient, ApiKey]:
    """:func:`authenticate_key` behind the per-address failure throttle.

    Raises DRF's ``Throttled`` (429) while the address is refused and
    ``AuthenticationFailed`` (401) for a bad key, which is counted.
    """
    subjects = _address(request)
    try:
        throttle.check(throttle.API, subjects)
    except throttle.Throttled as refused:
        raise exceptions.Throttled(
            wait=refused.retry_after_header, detail="Too many requests with invalid API keys from this address."
        ) from None
    try:
        return authenticate_key(raw)
    except exceptions.AuthenticationFailed:
        throttle.record_failure(throttle.API, subjects)
        raise


def authenticate_key(raw: str) -> tuple[TenantClient, ApiKey]:
    """Resolve a raw key to its client, or raise ``AuthenticationFailed``."""
    parts = split_key(raw.strip())
    if parts is None:
        raise exceptions.AuthenticationFailed(INVALID_KEY)
    key = ApiKey.objects.select_related("tenant").filter(prefix=parts[0]).first()
    if key is None or not key.matches(raw.strip()):
        raise exceptions.AuthenticationFailed(INVALID_KEY)
    if key.revoked:
        raise exceptions.AuthenticationFailed(REVOKED_KEY)
    key.touch(timezone.now(), float(settings.BLAST_API_KEY_TOUCH_INTERVAL_S))
    return TenantClient(key), key


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TenantClient, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
        if not credentials.strip() or " " in credentials.strip():
            credentials = ""  # counted as a bad key like any other
        return authenticate_key_from(request, credentials)

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when no credentials were sent.
        return f'{self.keyword} realm="blast"'


class QueryTokenAuthentication(ApiKeyAuthentication):
    """The seed's ``?access_token=<key>``; falls back to the Bearer header."""

    param = "access_token"

    def authenticate(self, request: Request) -> tuple[TenantClient, ApiKey] | None:
        token = request.query_params.get(self.param)
        if token is None:
            return super().authenticate(request)
        return authenticate_key_from(request, token)


class IsTenantClient(BasePermission):
    """Only requests authenticated with an API key reach a tenant view."""

    message = "Authentication credentials were not provided."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, TenantClient)
