"""Content negotiation of the views that answer more than JSON (the QR
code, a campaign's report): ``?format=`` names one of the view's formats.

DRF ignores an empty ``format`` and answers a format the view does not have
with a bare 404; here both are a 400 on ``format`` that lists the formats,
as the OpenAPI schema's enum of the parameter says.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FormatParameterNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        name = self.settings.URL_FORMAT_OVERRIDE
        if format_suffix is None and name and name in request.query_params:
            wanted = request.query_params[name]
            offered = [renderer.format for renderer in renderers]
            if wanted not in offered:
                shown = wanted if len(wanted) <= 20 else wanted[:20] + "…"
                raise exceptions.ValidationError({name: [f"'{shown}' is not one of {', '.join(offered)}."]})
        selected: Any = super().select_renderer(request, renderers, format_suffix)
        return selected  # type: ignore[no-any-return]
