"""Request parsers of the contact-list upload: CSV as the body, or a
multipart form with the file; both bounded by ``BLAST_CSV_MAX_BYTES``
(413 JSON above it, checked on the declared length before anything is read
and again on what is read)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.parsers import BaseParser, MultiPartParser

from api.parsers import PayloadTooLarge, declared_length

# Room for the multipart boundaries and the form's other fields.
MULTIPART_OVERHEAD = 64 * 1024


def _limit() -> int:
    return int(settings.BLAST_CSV_MAX_BYTES)


class CsvParser(BaseParser):
    """``Content-Type: text/csv``: the body is the file (bytes)."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        limit = _limit()
        if declared_length(parser_context) > limit:
            raise PayloadTooLarge(f"The file is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The file is larger than {limit} bytes.")
        return raw


class BoundedMultiPartParser(MultiPartParser):
    """``multipart/form-data`` with a ``file`` part, refused above the limit."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        limit = _limit()
        if declared_length(parser_context) > limit + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"The file is larger than {limit} bytes.")
        return super().parse(stream, media_type, parser_context)
