"""Bad settings stop start-up with a message that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("BLAST_BREAKER_THRESHOLD", "abc", "BLAST_BREAKER_THRESHOLD must be a whole number, got 'abc'"),
        ("BLAST_BREAKER_THRESHOLD", "0", "BLAST_BREAKER_THRESHOLD must be at least 1"),
        ("BLAST_RETRY_JITTER", "1.5", "BLAST_RETRY_JITTER must be at most 1"),
        ("BLAST_LEASE_TTL_S", "nan", "BLAST_LEASE_TTL_S must be a finite number"),
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("REDIS_URL", "http://localhost", "REDIS_URL must start with redis://"),
        ("DATABASE_URL", "nosuchdb://x", "DATABASE_URL is not a valid database URL"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name: str, value: str, says: str) -> None:
    result = _check(**{name: value})
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_good_values_start() -> None:
    result = _check(BLAST_BREAKER_THRESHOLD="12", BLAST_RETRY_JITTER="0.1", DEBUG="false")
    assert result.returncode == 0, result.stderr
