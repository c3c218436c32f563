"""The layer check (``python -m blast.layers``, run by ``make lint``): the
project passes it, and it finds what it exists to find."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from blast import layers


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in layers.PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_the_project_has_no_upward_import_and_no_circle() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blast.layers"], cwd=layers.ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no upward import, no import circle" in done.stdout


def test_an_upward_import_is_reported_with_its_place(tmp_path: Path, capsys) -> None:
    root = write(
        tmp_path,
        {
            "instances/admin.py": "from engine import supervisor\n",
            "campaigns/models.py": "from instances.models import Instance\n",  # downward: fine
        },
    )
    assert layers.main(root) == 1
    out = capsys.readouterr().out
    assert "instances/admin.py:1: instances.admin imports engine" in out
    assert "campaigns/models.py" not in out


def test_an_import_deferred_into_a_function_counts(tmp_path: Path) -> None:
    root = write(tmp_path, {"monitoring/health.py": "def check():\n    from campaigns import sender\n"})
    modules = layers.project_modules(root)
    found = layers.upward(layers.imports_of("monitoring.health", modules["monitoring.health"]))
    assert [(f.module, f.target.split(".")[0], f.line) for f in found] == [("monitoring.health", "campaigns", 2)]


def test_type_checking_imports_never_run_and_do_not_count(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "instances/models.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.state import Held\n"
            )
        },
    )
    assert layers.main(root) == 0


def test_the_simulator_imports_no_app(tmp_path: Path, capsys) -> None:
    root = write(tmp_path, {"simulator/codes.py": "from instances.reasons import Reason\n"})
    assert layers.main(root) == 1
    assert "simulator.codes imports instances.reasons" in capsys.readouterr().out


def test_an_import_circle_across_apps_is_reported(tmp_path: Path, capsys) -> None:
    root = write(
        tmp_path,
        {"campaigns/a.py": "import campaigns.b\n", "campaigns/b.py": "from campaigns import a\n"},
    )
    assert layers.main(root) == 1
    assert "import circle: campaigns.a -> campaigns.b" in capsys.readouterr().out


def test_the_cycle_finder_finds_a_circle() -> None:
    assert layers.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
