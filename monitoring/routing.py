"""Browser WebSocket routes of the monitoring app (mounted in blast/asgi.py)."""

from django.urls import path

from monitoring.consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
