"""``GET /m/<token>``: a gateway fetches a message's file through its signed link.

No credentials: the link is the credential (media.links). An expired link
is a 410, a forged or damaged one a 404, like a media deleted since; the
answer never says which tenant or file a bad link was meant for.
"""

from __future__ import annotations

from django.db.models import F
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_GET

from media import links
from media.models import Media


class _FileResponse(FileResponse):
    # Under ASGI every block is one hop to a thread: 4 KiB blocks (Django's
    # default) make a 200 KiB image fifty of them.
    block_size = 512 * 1024


@require_GET
def link(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        media_id = links.media_id(token)
    except links.Expired:
        return HttpResponse("This link has expired.\n", status=410, content_type="text/plain")
    except links.Invalid:
        raise Http404("No such file.") from None
    media = Media.objects.filter(pk=media_id).first()
    if media is None:
        raise Http404("No such file.")
    try:
        handle = media.file.open("rb")
    except FileNotFoundError:
        raise Http404("No such file.") from None
    Media.objects.filter(pk=media.pk).update(fetches=F("fetches") + 1, bytes_served=F("bytes_served") + media.size)
    response = _FileResponse(handle, content_type=media.mime, filename=media.filename, as_attachment=False)
    response["Cache-Control"] = "private, no-store"
    return response
