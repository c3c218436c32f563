"""The upload's parser: ``multipart/form-data``, refused (400 on ``file``)
when the declared body is larger than the largest file accepted, before
anything is read."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import MultiPartParser

from api.parsers import declared_length
from media import kinds

# Room for the multipart boundaries and the form's other fields.
MULTIPART_OVERHEAD = 64 * 1024


class MediaUploadParser(MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        limit = kinds.max_bytes()
        if declared_length(parser_context) > limit + MULTIPART_OVERHEAD:
            raise exceptions.ValidationError({"file": [f"The file is larger than {limit} bytes, the most accepted."]})
        return super().parse(stream, media_type, parser_context)
