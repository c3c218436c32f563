"""The chaos soak's short form: one minute of random faults and killed
workers, then every invariant must hold (the long form is in the README)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_one_minute_chaos_soak_keeps_every_invariant(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'chaos.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "bench/chaos_soak.py", "--instances", "20", "--minutes", "1", "--seed", "7"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    report = result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, report
    assert "all invariants hold" in result.stdout, report
    assert result.stdout.count("PASS") == 6, report
