from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before api.urls: its last route answers every other /api/ path with 404.
    path("", include("campaigns.api_urls")),
    path("", include("api.urls")),
    path("", include("monitoring.urls")),
]
