from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("health", views.health_view, name="health"),
    path("health/live", views.live_view, name="health-live"),
    path("health/ready", views.ready_view, name="health-ready"),
    path("metrics", views.metrics_view, name="metrics"),
    path("dashboard/", views.dashboard_view, name="dashboard"),
]
