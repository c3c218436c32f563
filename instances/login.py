"""The admin login page, throttled by user name and by address.

Failed logins are counted (:mod:`instances.throttle`) for the pair of user
name and address (``BLAST_LOGIN_FAILURE_LIMIT`` per
``BLAST_LOGIN_FAILURE_WINDOW_S``), for the address alone (four times that:
one address guessing many names) and for the user name alone (ten times
that: many addresses guessing one name, without letting one address lock an
operator out). A subject at its limit is answered 429 with ``Retry-After``
and the credentials are not checked; a successful login clears the pair.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from instances import throttle

ADDRESS_FACTOR = 4
USER_FACTOR = 10


def subjects(request: HttpRequest) -> list[throttle.Subject]:
    limit = int(settings.BLAST_LOGIN_FAILURE_LIMIT)
    address = throttle.client_address(request.META)
    username = str(request.POST.get("username", "")).strip().lower()[:150]
    return [
        throttle.Subject("user and address", f"{username}|{address}" if username else "", limit),
        throttle.Subject("address", address, limit * ADDRESS_FACTOR),
        throttle.Subject("user", username, limit * USER_FACTOR),
    ]


def admin_login(request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
    """``admin.site.login`` behind the failed-login throttle."""
    if request.method != "POST":
        return admin.site.login(request, extra_context)
    who = subjects(request)
    try:
        throttle.check(throttle.ADMIN, who)
    except throttle.Throttled as refused:
        return _refused(request, refused)
    response = admin.site.login(request, extra_context)
    if response.status_code in (301, 302) and request.user.is_authenticated:
        throttle.clear(throttle.ADMIN, who[:1])
    else:
        throttle.record_failure(throttle.ADMIN, who)
    return response


def _refused(request: HttpRequest, refused: throttle.Throttled) -> HttpResponse:
    form = AuthenticationForm(request)
    minutes = max(1, round(refused.retry_after_s / 60))
    form.errors[NON_FIELD_ERRORS] = form.error_class(
        [f"Too many failed logins. Try again in about {minutes} minute{'s' if minutes != 1 else ''}."]
    )
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "form": form,
        "app_path": request.get_full_path(),
        "username": "",
    }
    response = TemplateResponse(request, "admin/login.html", context, status=429)
    response["Retry-After"] = str(refused.retry_after_header)
    return response
