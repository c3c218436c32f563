"""Every error of the API as JSON: ``{"detail": "..."}`` or field errors.

DRF's handler covers its own exceptions; this one adds the platform's:
a refused command is 409, a rate-limited control 429 with ``Retry-After``,
an unreachable rate limiter 503, and any unexpected exception a logged,
JSON 500 (never Django's HTML page).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from api.parsers import PayloadTooLarge
from instances.commands import CommandRefused
from instances.ratelimit import LimiterUnavailable, RateLimited

logger = logging.getLogger("blast.api")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The command does not apply to the instance in its current state."
    default_code = "conflict"


class ManualActionThrottled(exceptions.Throttled):
    default_detail = "This action was used on this instance moments ago."
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service the API depends on is unavailable; try again shortly."
    default_code = "service_unavailable"


def translate(exc: BaseException) -> BaseException:
    """The API exception standing for one of the platform's own."""
    if isinstance(exc, CommandRefused):
        return Conflict(str(exc) or None)
    if isinstance(exc, RateLimited):
        return ManualActionThrottled(wait=exc.retry_after_header)
    if isinstance(exc, LimiterUnavailable):
        return ServiceUnavailable("The rate limiter is unavailable; try again shortly.")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    return exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: JSON for every error, 500 included."""
    translated = translate(exc)
    response = exception_handler(translated, context)  # type: ignore[arg-type]
    if response is not None:
        return response
    request = context.get("request")
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is away (restarting, out of connections): not the
        # client's fault and not a bug; say so and when to come back.
        logger.warning(
            "⚠️ database unavailable in %s %s: %s", getattr(request, "method", "?"), getattr(request, "path", "?"), exc
        )
        set_rollback()
        return Response(
            {"detail": "The service is briefly unavailable; retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    logger.error(
        "💥 unexpected error in %s %s",
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    set_rollback()
    return Response({"detail": "Internal server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
