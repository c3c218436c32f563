"""Operator pages for media: a tenant's staff see their tenant's files, with
a preview (images inline, the rest as a link), through a signed link made
for the page."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.filters import ChoicesFieldListFilter
from django.urls import reverse
from django.utils.html import format_html

from instances.admin import ReadOnlyAdmin, TenantScopedAdmin, titled
from media import links
from media.models import Media


def _link(media: Media) -> str:
    return reverse("media:link", kwargs={"token": links.token(media.pk)})


@admin.register(Media)
class MediaAdmin(TenantScopedAdmin, ReadOnlyAdmin):
    list_display = ["filename", "preview", "kind", "mime", "size", "tenant", "fetches", "created_at"]
    list_filter = [("kind", titled(ChoicesFieldListFilter, "kind of file"))]
    search_fields = ["filename", "key", "sha256"]
    readonly_fields = [
        "key",
        "tenant",
        "preview",
        "kind",
        "mime",
        "filename",
        "size",
        "sha256",
        "source_url",
        "fetches",
        "bytes_served",
        "created_at",
    ]
    fields = readonly_fields

    @admin.display(description="preview")
    def preview(self, media: Media) -> str:
        if media.kind == "image":
            return format_html(
                '<a href="{0}"><img src="{0}" alt="{1}" style="max-height: 120px; max-width: 200px"></a>',
                _link(media),
                media.filename,
            )
        return format_html('<a href="{}">open {}</a>', _link(media), media.kind)
