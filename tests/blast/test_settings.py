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


def _check_without_keys(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` with no key in the environment and an empty run folder."""
    base = {name: value for name, value in os.environ.items() if name not in {"SECRET_KEY", "BLAST_TOKEN_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, "BLAST_RUN_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_debug_it_refuses_to_start_with_no_secret_key(tmp_path: Path) -> None:
    result = _check_without_keys(tmp_path)
    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_debug_it_refuses_the_public_development_key(tmp_path: Path) -> None:
    result = _check_without_keys(
        tmp_path, SECRET_KEY="blast-development-key-do-not-use-in-production", BLAST_TOKEN_KEY="t" * 40
    )
    assert result.returncode == 2
    assert "public development key" in result.stderr


def test_without_debug_it_refuses_to_start_with_no_token_key(tmp_path: Path) -> None:
    result = _check_without_keys(tmp_path, SECRET_KEY="s" * 50)
    assert result.returncode == 2
    assert "BLAST_TOKEN_KEY is not set" in result.stderr


def test_debug_allows_the_development_key(tmp_path: Path) -> None:
    result = _check_without_keys(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_keys_kept_in_the_run_folder_are_used(tmp_path: Path) -> None:
    (tmp_path / "secret-key").write_text("k" * 50 + "\n")
    (tmp_path / "token-key").write_text("t" * 50 + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings as s; print(s.SECRET_KEY == 'k' * 50, s.BLAST_TOKEN_KEY == ['t' * 50])",
        ],
        cwd=ROOT,
        env={
            **{n: v for n, v in os.environ.items() if n not in {"SECRET_KEY", "BLAST_TOKEN_KEY", "DEBUG"}},
            "BLAST_RUN_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["True", "True"]


def test_make_run_and_make_test_keep_their_keys(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "ensure-keys.sh"
    env = {**os.environ, "BLAST_RUN_DIR": str(tmp_path / "run")}
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=60)
    first = {name: (tmp_path / "run" / name).read_text() for name in ("secret-key", "token-key")}
    subprocess.run([str(script)], env=env, check=True, capture_output=True, timeout=60)
    again = {name: (tmp_path / "run" / name).read_text() for name in ("secret-key", "token-key")}
    assert first == again
    assert first["secret-key"] != first["token-key"]
    assert all(len(value.strip()) >= 50 for value in first.values())
    assert (tmp_path / "run" / "secret-key").stat().st_mode & 0o077 == 0
