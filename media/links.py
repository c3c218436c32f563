"""The signed, expiring links through which gateways fetch a message's file.

A link names one media object and when it was made, signed with the
platform's secret key (``django.core.signing``, its own salt): it needs no
credentials, can be made by any process that has the settings (the
connection worker makes a fresh one for every send), and stops working
``BLAST_MEDIA_LINK_TTL_S`` after it was made. Nothing is stored per link.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "blast.media.link"


def token(media_id: int) -> str:
    return signing.dumps(media_id, salt=SALT, compress=False)


def url(media_id: int) -> str:
    """The absolute link for ``media_id``, valid from now for the link TTL."""
    base = settings.BLAST_PUBLIC_URL.rstrip("/")
    return base + reverse("media:link", kwargs={"token": token(media_id)})


class Expired(Exception):
    pass


class Invalid(Exception):
    pass


def media_id(value: str) -> int:
    """The media id a link names; :class:`Expired` or :class:`Invalid` otherwise."""
    try:
        found = signing.loads(value, salt=SALT, max_age=settings.BLAST_MEDIA_LINK_TTL_S)
    except signing.SignatureExpired:
        raise Expired from None
    except signing.BadSignature:
        raise Invalid from None
    if not isinstance(found, int) or isinstance(found, bool):
        raise Invalid
    return found


class FileRef(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def mime(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def size(self) -> int: ...


def media_frame(ref: FileRef) -> dict[str, Any]:
    """The ``media`` object of a v1.1 ``send`` frame, with a fresh link."""
    return {"kind": ref.kind, "url": url(ref.id), "mime": ref.mime, "filename": ref.filename, "size": ref.size}
