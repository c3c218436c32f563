"""How the campaigns app reads its settings.

Every setting, with its default and meaning, is in ``blast/settings.py``
(section "Messages and campaigns"); this module holds no second copy. Read
them through :func:`get` at call time, never at import time, so that tests
can override them (pytest-django's ``settings`` fixture).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def get(name: str) -> Any:
    """The setting ``name`` as the project has it now (``AttributeError`` for
    a name the project does not define)."""
    return getattr(settings, name)
