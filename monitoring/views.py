"""HTTP endpoints: health, metrics, the dashboard page."""

from __future__ import annotations

import asyncio
import hmac
import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from instances.models import Tenant
from monitoring import dashboard, health, metrics


def _health_response(report: health.HealthReport) -> HttpResponse:
    response = HttpResponse(report.to_bytes(), content_type=health.CONTENT_TYPE, status=report.http_status)
    response["Cache-Control"] = "no-store"
    return response


# The evaluation in progress, per event loop: requests that arrive while it
# runs share its report instead of queueing one evaluation each.
_evaluating: dict[asyncio.AbstractEventLoop, asyncio.Task[health.HealthReport]] = {}


async def shared_evaluation() -> health.HealthReport:
    """``health.evaluate()``, run once for every request that arrives while it
    runs: under a burst of probes the checks cost one evaluation at a time,
    and no report is older than one evaluation; a request that arrives when
    none is running starts a fresh one."""
    loop = asyncio.get_running_loop()
    task = _evaluating.get(loop)
    if task is None or task.done():
        task = loop.create_task(sync_to_async(health.evaluate)())
        _evaluating[loop] = task

        def forget(done: asyncio.Task[health.HealthReport]) -> None:
            if _evaluating.get(loop) is done:
                del _evaluating[loop]

        task.add_done_callback(forget)
    # Shielded: a client that goes away does not cancel the others' report.
    return await asyncio.shield(task)


@require_safe
@never_cache
async def health_view(request: HttpRequest) -> HttpResponse:
    """``/health``: every check and the score; 200 for pass and warn, 503 for fail."""
    return _health_response(await shared_evaluation())


@require_safe
@never_cache
async def live_view(request: HttpRequest) -> HttpResponse:
    """``/health/live``: the process answers (touches no dependency).

    Async and touching nothing: it runs on the event loop, and the sync
    middleware before it runs in a thread of the request's own, so it waits
    for no other request's sync work (an upload's import, a slow query).
    """
    body = json.dumps({"status": health.PASS, "serviceId": "blast"}).encode()
    return HttpResponse(body, content_type=health.CONTENT_TYPE)


@require_safe
@never_cache
def ready_view(request: HttpRequest) -> HttpResponse:
    """``/health/ready``: the database and Redis answer (503 otherwise)."""
    return _health_response(health.readiness())


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` in the Prometheus text format; behind a bearer token when
    ``BLAST_METRICS_TOKEN`` is set."""
    token = settings.BLAST_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
@never_cache
def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The live dashboard; staff tied to a tenant see that tenant only, staff
    who are neither operators nor tied to a tenant get 403 (``scope_of``)."""
    tenant_id = dashboard.scope_of(request.user)
    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id is not None else None
    state = dashboard.build_state(tenant_id)
    return render(
        request,
        "monitoring/dashboard.html",
        {
            "state": state,
            "tenant": tenant,
            "poll_s": settings.BLAST_DASHBOARD_POLL_S,
            "ws_path": "/ws/dashboard/",
        },
    )
