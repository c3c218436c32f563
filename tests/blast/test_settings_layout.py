"""blast/settings.py defines each setting once, in its section, creates
nothing when read, and is the only source of the campaigns app's defaults."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from campaigns import contacts

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "blast" / "settings.py"


def _module_statements() -> list[ast.stmt]:
    """Top-level statements, those inside top-level ``if``/``try`` included."""
    found: list[ast.stmt] = []
    pending = list(ast.parse(SETTINGS.read_text()).body)
    while pending:
        node = pending.pop(0)
        found.append(node)
        if isinstance(node, ast.If | ast.Try):
            pending.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
    return found


def test_each_setting_is_assigned_in_one_place_and_no_setting_is_patched_later() -> None:
    assigned: dict[str, int] = {}
    patched: list[str] = []
    for node in _module_statements():
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    assigned.setdefault(target.id, 0)
                    assigned[target.id] += 1
                elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    if target.value.id.isupper():
                        patched.append(ast.unparse(target))
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id.isupper():
            patched.append(ast.unparse(node.target))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and ast.unparse(func.value).split("[")[0].isupper():
                patched.append(ast.unparse(func))
    # SECRET_KEY falls back to the development key under DEBUG, in its section.
    assert {name: count for name, count in assigned.items() if count > 1} == {"SECRET_KEY": 2}
    assert patched == []


def test_reading_the_settings_creates_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    before = sorted(path.name for path in ROOT.iterdir())
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; settings.DATABASES"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "blast.settings", "BLAST_RUN_DIR": str(run_dir), "DEBUG": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert not run_dir.exists()
    assert sorted(path.name for path in ROOT.iterdir()) == before


def test_the_campaigns_settings_come_from_the_project_settings_only(settings: Any) -> None:
    # No module of the app keeps a default of its own ...
    for path in (ROOT / "campaigns").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        assigned = {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        assert not {name for name in assigned if name.startswith("BLAST_") or name == "DEFAULTS"}, path
    # ... and the app reads the project's value at call time.
    settings.BLAST_CSV_MAX_ROWS = 7
    with pytest.raises(contacts.CsvRejected, match="more than 7 rows"):
        contacts.parse("phone\n" + "+6281234567890\n" * 8)
