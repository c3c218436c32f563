"""Which files a message may carry, told from their content, never their name.

The allow-list maps each accepted type (as sniffed by ``filetype`` from the
file's first bytes) to the protocol's media kind and to the largest file of
that kind, WhatsApp's own limits capped by ``BLAST_MEDIA_MAX_BYTES``. A file
whose content matches no accepted type is refused, whatever it is called:
an executable renamed ``photo.jpg`` is still an executable.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

import filetype
from django.conf import settings

MIB = 1024 * 1024
# filetype reads no more than this of a file to recognise it.
SNIFF_BYTES = 8192


class Kind(enum.StrEnum):
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True)
class Accepted:
    kind: Kind
    max_bytes: int  # before BLAST_MEDIA_MAX_BYTES caps it


ALLOWED: dict[str, Accepted] = {
    "image/jpeg": Accepted(Kind.IMAGE, 5 * MIB),
    "image/png": Accepted(Kind.IMAGE, 5 * MIB),
    "image/webp": Accepted(Kind.IMAGE, 5 * MIB),
    "video/mp4": Accepted(Kind.VIDEO, 16 * MIB),
    "video/3gpp": Accepted(Kind.VIDEO, 16 * MIB),
    "audio/ogg": Accepted(Kind.AUDIO, 16 * MIB),
    "audio/mpeg": Accepted(Kind.AUDIO, 16 * MIB),
    "audio/mp4": Accepted(Kind.AUDIO, 16 * MIB),
    "audio/aac": Accepted(Kind.AUDIO, 16 * MIB),
    "audio/amr": Accepted(Kind.AUDIO, 16 * MIB),
    "application/pdf": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/msword": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/vnd.ms-excel": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/vnd.ms-powerpoint": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": Accepted(Kind.DOCUMENT, 100 * MIB),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": Accepted(Kind.DOCUMENT, 100 * MIB),
}
# What filetype calls some of them, and what the network calls them.
ALIASES = {"audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "video/x-m4v": "video/mp4"}


class Refused(ValueError):
    """Why a file may not be sent; the message is for the person who sent it."""


def max_bytes(mime: str | None = None) -> int:
    """The largest file accepted: of type ``mime``, or of any accepted type."""
    cap = settings.BLAST_MEDIA_MAX_BYTES
    if mime is None:
        return min(cap, max(a.max_bytes for a in ALLOWED.values()))
    return min(cap, ALLOWED[mime].max_bytes)


def sniff(head: bytes) -> str | None:
    """The type of a file from its first bytes, or None when unknown."""
    found = filetype.guess_mime(head[:SNIFF_BYTES])
    if found is None:
        return None
    return ALIASES.get(found, found)


def accept(head: bytes, size: int) -> tuple[str, Kind]:
    """The sniffed type and kind of a file of ``size`` bytes beginning with
    ``head``; raises :class:`Refused` saying why it may not be sent."""
    if size <= 0:
        raise Refused("The file is empty.")
    mime = sniff(head)
    if mime is None:
        raise Refused("The file's type could not be recognised from its content.")
    if mime not in ALLOWED:
        raise Refused(f"Files of type {mime} are not accepted (images, documents, audio and video only).")
    limit = max_bytes(mime)
    if size > limit:
        raise Refused(f"A {mime} file may be at most {limit} bytes; this one is {size}.")
    return mime, ALLOWED[mime].kind


EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/3gpp": "3gp",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
}


def clean_filename(raw: str | None, mime: str) -> str:
    """A file name safe to show and to send: the last path part, without
    control characters, at most 255 characters; ``file.<ext>`` when none is left."""
    name = (raw or "").strip()
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    if not name:
        name = f"file.{EXTENSIONS.get(mime, 'bin')}"
    return name[-255:]
