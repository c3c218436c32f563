"""Page-number pagination with the page size from settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class Pagination(PageNumberPagination):
    """``?page=`` and ``?page_size=`` (default ``BLAST_API_PAGE_SIZE``, at most
    ``BLAST_API_MAX_PAGE_SIZE``).

    A ``page`` or ``page_size`` that is not a whole number in range is a 400
    on that parameter (DRF would silently fall back to the default size); a
    page past the end is a JSON 404.
    """

    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int | None:
        self.page_size = int(settings.BLAST_API_PAGE_SIZE)
        self.max_page_size = int(settings.BLAST_API_MAX_PAGE_SIZE)
        errors = {}
        for name, maximum in (("page", None), ("page_size", self.max_page_size)):
            values = request.query_params.getlist(name)
            if not values:
                continue
            if len(values) > 1 or not _whole(values[0], maximum):
                limit = f" from 1 to {maximum}" if maximum else " of 1 or more"
                errors[name] = [f"A single whole number{limit}."]
        if errors:
            raise ValidationError(errors)
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            schema = parameter.setdefault("schema", {})
            schema["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                schema["maximum"] = int(settings.BLAST_API_MAX_PAGE_SIZE)
        return parameters


def _whole(value: str, maximum: int | None) -> bool:
    if not value.isascii() or not value.isdigit():
        return False
    number = int(value)
    return number >= 1 and (maximum is None or number <= maximum)
