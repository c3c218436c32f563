from django.contrib import admin
from django.urls import include, path

from instances.login import admin_login

# The admin is Blast's operator console: its pages, login included, say so.
admin.site.site_header = "Blast administration"
admin.site.site_title = "Blast admin"
admin.site.index_title = "Blast operations"

urlpatterns = [
    # Before the admin's own routes: its login page behind the failed-login throttle.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    # Before api.urls: its last route answers every other /api/ path with 404.
    path("", include("campaigns.api_urls")),
    path("", include("media.urls")),
    path("", include("api.urls")),
    path("", include("monitoring.urls")),
]
