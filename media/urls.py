from __future__ import annotations

from django.urls import path

from media import api, views

app_name = "media"

urlpatterns = [
    path("m/<str:token>", views.link, name="link"),
    path("api/v1/media", api.MediaListView.as_view(), name="media-list"),
    path("api/v1/media/<str:id>", api.MediaDetailView.as_view(), name="media-detail"),
]
