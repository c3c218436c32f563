"""Routes of the tenant API, its schema and docs, and the seed's endpoints.

Paths take no trailing slash (exactly as documented in docs/API.md); any
other path under ``/api/`` is a JSON 404.
"""

from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from api import policy, views

app_name = "api"

INSTANCE = "api/v1/instances/<str:id>"

urlpatterns = [
    # Schema and docs: open, so that anybody can read how to use the API.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's start-up script comes from its own URL (no inline script);
    # ReDoc's page has one inline script and runs its search in a blob worker.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path(
        "api/redoc/",
        csp_update({"script-src": [UNSAFE_INLINE], "worker-src": ["'self'", "blob:"]})(
            SpectacularRedocView.as_view(url_name="api:schema")
        ),
        name="redoc",
    ),
    # The API.
    path("api/v1/gateways", views.GatewayListView.as_view(), name="gateways"),
    path("api/v1/gateways/<int:id>/probe", views.GatewayProbeView.as_view(), name="gateway-probe"),
    path("api/v1/instances", views.InstanceListView.as_view(), name="instances"),
    path(INSTANCE, views.InstanceDetailView.as_view(), name="instance"),
    path(f"{INSTANCE}/connect", views.ConnectView.as_view(), name="connect"),
    path(f"{INSTANCE}/disconnect", views.DisconnectView.as_view(), name="disconnect"),
    path(f"{INSTANCE}/logout", views.LogoutView.as_view(), name="logout"),
    path(f"{INSTANCE}/sending-policy", policy.SendingPolicyView.as_view(), name="sending-policy"),
    path(f"{INSTANCE}/circuit-breaker", views.CircuitBreakerView.as_view(), name="circuit-breaker"),
    path(f"{INSTANCE}/force-retry", views.ForceRetryView.as_view(), name="force-retry"),
    path(f"{INSTANCE}/reset-circuit-breaker", views.ResetBreakerView.as_view(), name="reset-circuit-breaker"),
    path(f"{INSTANCE}/qr", views.QRCodeView.as_view(), name="qr"),
    path(f"{INSTANCE}/pair-code", views.PairCodeView.as_view(), name="pair-code"),
    path(f"{INSTANCE}/events", views.EventListView.as_view(), name="events"),
    path("api/v1/sending-defaults", policy.SendingDefaultsView.as_view(), name="sending-defaults"),
    path("api/v1/health", views.HealthView.as_view(), name="health"),
    # The seed's endpoints, for clients migrating from the old gateway.
    path(
        "circuit-breaker-status/<str:instance_id>",
        views.SeedBreakerStatusView.as_view(),
        name="seed-circuit-breaker-status",
    ),
    path("force-retry/<str:instance_id>", views.SeedForceRetryView.as_view(), name="seed-force-retry"),
    path(
        "reset-circuit-breaker/<str:instance_id>",
        views.SeedResetBreakerView.as_view(),
        name="seed-reset-circuit-breaker",
    ),
    # Last: everything else under /api/ is a JSON 404.
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found, name="not-found"),
]
