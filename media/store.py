"""Creating a tenant's media from an upload or a URL, and serving it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.core.files.base import ContentFile, File

from instances.models import Tenant
from media import fetch, kinds
from media.models import Media


def _digest(chunks: Iterable[bytes]) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(chunk)
    return sha.hexdigest()


def from_upload(tenant: Tenant, upload: File, filename: str | None = None) -> Media:  # type: ignore[type-arg]
    """A new media from an uploaded file; :class:`kinds.Refused` says why not."""
    size = upload.size or 0
    if size > kinds.max_bytes():
        raise kinds.Refused(f"The file is {size} bytes; at most {kinds.max_bytes()} are accepted.")
    upload.seek(0)
    head = upload.read(kinds.SNIFF_BYTES)
    mime, kind = kinds.accept(head, size)
    upload.seek(0)
    sha256 = _digest(upload.chunks())
    upload.seek(0)
    media = Media(
        tenant=tenant,
        kind=kind,
        mime=mime,
        filename=kinds.clean_filename(filename or upload.name, mime),
        size=size,
        sha256=sha256,
    )
    media.file.save("upload", upload, save=False)
    media.save()
    return media


def from_url(tenant: Tenant, url: str, filename: str | None = None) -> Media:
    """A new media downloaded once from ``url``; :class:`fetch.FetchRefused`
    or :class:`kinds.Refused` says why not."""
    fetched = fetch.fetch(url, kinds.max_bytes())
    mime, kind = kinds.accept(fetched.body, len(fetched.body))
    media = Media(
        tenant=tenant,
        kind=kind,
        mime=mime,
        filename=kinds.clean_filename(filename or fetched.filename, mime),
        size=len(fetched.body),
        sha256=hashlib.sha256(fetched.body).hexdigest(),
        source_url=url,
    )
    media.file.save("fetched", ContentFile(fetched.body), save=False)
    media.save()
    return media
