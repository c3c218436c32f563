"""Fixtures of the media tests: files kept under the test's own folder, and
sample files that are what their first bytes say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cast import Cast, build_cast

# Enough of each format for its type to be told from its content.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"


def sized(head: bytes, size: int) -> bytes:
    return head + b"\x00" * (size - len(head))


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "media": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture
def cast(db: Any) -> Cast:
    """Tenant A and tenant B, each with its key and instances (tests.fixtures.cast)."""
    return build_cast()
