"""Pairing QR codes as images (segno): PNG bytes, a PNG data URI, inline SVG.

The inline SVG is drawn again and again for the same code: the admin's change
page asks for it every couple of seconds and the dashboard rebuilds its
sections for every open page on each tick, while a gateway keeps one code for
some 20 s. Drawing a code takes milliseconds, so the last ``SVG_CACHE`` codes
drawn are kept.
"""

from __future__ import annotations

import base64
import functools
import io

import segno

PNG_SCALE = 6
SVG_SCALE = 4
BORDER = 4
SVG_CACHE = 512


def _make(code: str) -> segno.QRCode:
    # Error correction M, the usual for codes shown on a screen.
    return segno.make(code, error="m", micro=False)


def png(code: str) -> bytes:
    """The code as a PNG image."""
    buffer = io.BytesIO()
    _make(code).save(buffer, kind="png", scale=PNG_SCALE, border=BORDER)
    return buffer.getvalue()


def png_data_uri(code: str) -> str:
    """The PNG as a ``data:image/png;base64,...`` URI, for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png(code)).decode("ascii")


def svg(code: str) -> str:
    """The code as a standalone SVG document."""
    buffer = io.BytesIO()
    _make(code).save(buffer, kind="svg", scale=SVG_SCALE, border=BORDER, xmldecl=True)
    return buffer.getvalue().decode("utf-8")


@functools.lru_cache(maxsize=SVG_CACHE)
def svg_inline(code: str) -> str:
    """The code as an ``<svg>`` element to embed in HTML (segno writes only path data)."""
    return str(_make(code).svg_inline(scale=SVG_SCALE, border=BORDER))
