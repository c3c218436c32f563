"""The Procfile supervisor behind ``make run`` (scripts/procfile.py), run for
real: stopping it ends every process it started and their children, whether
its stdout is a file, a pipe whose reader died or a pipe nobody reads; one
process ending stops the rest; each process's lines land in its own log."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "procfile.py"
DEADLINE_S = 10.0

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc as on Linux")

# One Procfile process: writes its pid and its grandchild's, then prints lines.
CHILD = r"""
import itertools, os, pathlib, signal, subprocess, sys, time

name, *options = sys.argv[1:]

def option(flag, default=None):
    return options[options.index(flag) + 1] if flag in options else default

def write_pid(path, pid):
    pathlib.Path(path + ".tmp").write_text(str(pid))
    os.replace(path + ".tmp", path)

if "--ignore-term" in options:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen(["sleep", "300"])
write_pid(f"{name}.pid", os.getpid())
write_pid(f"{name}.grand.pid", grandchild.pid)
after = option("--after")
exit_after = option("--exit-after")
pad = "x" * int(option("--pad", "0"))
pause = float(option("--pause", "0.02"))
for i in itertools.count():
    if after is None or os.path.exists(after):
        print(f"{name} line {i} {pad}", flush=True)
        if exit_after is not None and i + 1 >= int(exit_after):
            sys.exit(int(option("--code", "0")))
    time.sleep(pause)
"""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (a zombie has already stopped, it only waits to be collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class Platform:
    """A temporary Procfile and its supervisor."""

    root: Path
    entries: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    pid_files: list[str] = field(default_factory=list)

    def add(self, name: str, *options: str, shell: bool = False) -> None:
        """An entry with a background ``sleep`` started by its shell and a
        grandchild started by its Python process. ``shell`` keeps the shell
        as the process group's leader, waiting for Python, instead of
        letting Python replace it."""
        python = f"{shlex.quote(sys.executable)} child.py {name} {' '.join(options)}"
        background = f"sleep 300 & echo $! > {name}.bg.tmp && mv {name}.bg.tmp {name}.bg.pid"
        if shell:
            own = f"echo $$ > {name}.sh.tmp && mv {name}.sh.tmp {name}.sh.pid"
            self.entries[name] = f"{own}; {background}; {python}; true"
            self.pid_files.append(f"{name}.sh.pid")
        else:
            self.entries[name] = f"{background}; exec {python}"
        self.pid_files += [f"{name}.bg.pid", f"{name}.pid", f"{name}.grand.pid"]

    def start(self, stdout: int | IO[bytes], grace: float = 5.0, **environ: str) -> subprocess.Popen[bytes]:
        (self.root / "child.py").write_text(CHILD)
        (self.root / "Procfile").write_text("".join(f"{name}: {command}\n" for name, command in self.entries.items()))
        env = {**os.environ, "BLAST_STOP_GRACE_S": str(grace), **environ}
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "-f", "Procfile", "--log-dir", "logs"],
            cwd=self.root,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
            env=env,
        )
        return self.process

    def pids(self) -> list[int]:
        """Every pid written so far (a file exists only once complete)."""
        return [int((self.root / name).read_text()) for name in self.pid_files if (self.root / name).exists()]

    def wait_started(self) -> list[int]:
        wait_until(lambda: len(self.pids()) == len(self.pid_files), "every process wrote its pid")
        pids = self.pids()
        assert all(alive(pid) for pid in pids)
        return pids

    def log(self, name: str) -> list[str]:
        return log_lines(self.root / "logs" / f"{name}.log")

    def cleanup(self) -> None:
        for pid in [*self.pids(), *([self.process.pid] if self.process else [])]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=DEADLINE_S)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    running = Platform(tmp_path)
    yield running
    running.cleanup()


def printed(platform: Platform, name: str) -> list[str]:
    """The lines the process printed itself, in its log."""
    return [line for line in platform.log(name) if f"{name} line" in line]


def assert_all_gone(pids: list[int]) -> None:
    wait_until(lambda: not any(alive(pid) for pid in pids), f"every process is gone: {[p for p in pids if alive(p)]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_every_process_after_the_reader_of_its_output_died(
    platform: Platform, sig: signal.Signals
) -> None:
    platform.add("alpha")
    platform.add("beta", shell=True)
    read, write = os.pipe()
    supervisor = platform.start(stdout=write)
    reader = subprocess.Popen(["head", "-n", "3"], stdin=read, stdout=subprocess.DEVNULL)
    os.close(read)
    os.close(write)
    pids = platform.wait_started()
    reader.wait(timeout=DEADLINE_S)
    # Writing to the dead pipe fails; the supervisor goes on with its logs.
    logged = len(platform.log("alpha"))
    wait_until(lambda: len(platform.log("alpha")) > logged + 5, "alpha's log grows after the reader died")
    assert supervisor.poll() is None

    supervisor.send_signal(sig)

    assert supervisor.wait(timeout=DEADLINE_S) == 0
    assert_all_gone(pids)


def test_a_reader_that_never_reads_does_not_hold_up_the_platform_or_its_stop(platform: Platform) -> None:
    platform.add("alpha", "--pad", "1000", "--pause", "0.001")
    read, write = os.pipe()
    try:
        supervisor = platform.start(stdout=write)
        os.close(write)
        pids = platform.wait_started()
        # Far more than a pipe holds: the supervisor is not stuck writing it.
        wait_until(lambda: len(platform.log("alpha")) > 500, "alpha's log goes past what the pipe holds")

        supervisor.send_signal(signal.SIGTERM)

        assert supervisor.wait(timeout=DEADLINE_S) == 0
        assert_all_gone(pids)
    finally:
        os.close(read)


def test_each_process_logs_to_its_own_file_and_the_terminal_gets_prefixed_lines(
    platform: Platform, tmp_path: Path
) -> None:
    platform.add("alpha")
    platform.add("beta", shell=True)
    platform.entries["gamma"] = (
        "echo \"v=${PF_VALUE:-fallback} u=${PF_UNSET:-default} w=$(echo sub)\"; printf '\\033[31mred\\033[0m\\n'; "
        "exec sleep 300"
    )
    with (tmp_path / "stdout.txt").open("wb") as stdout:
        supervisor = platform.start(stdout=stdout, PF_VALUE="given")
        pids = platform.wait_started()
        wait_until(lambda: all(len(printed(platform, name)) > 3 for name in ("alpha", "beta")), "both log lines")
        wait_until(lambda: any("red" in line for line in platform.log("gamma")), "gamma's lines are logged")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=DEADLINE_S) == 0
    assert_all_gone(pids)

    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        lines = printed(platform, name)
        assert len(lines) > 3
        assert all(re.fullmatch(stamp + rf"{name} line \d+ ", line) for line in lines), lines[:3]
        assert not any(f"{other} line" in line for line in platform.log(name))
    gamma = platform.log("gamma")
    assert any(re.fullmatch(stamp + "v=given u=default w=sub", line) for line in gamma), gamma
    assert any(re.fullmatch(stamp + "red", line) for line in gamma), gamma
    assert not any("\x1b" in line for name in ("alpha", "beta", "gamma", "system") for line in platform.log(name))

    shown = (tmp_path / "stdout.txt").read_text().splitlines()
    # Names padded to the longest, "system" included, as honcho does.
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d alpha  \| alpha line 0 ", line) for line in shown), shown[:10]
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d gamma  \| v=given u=default w=sub", line) for line in shown)
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d system \| SIGTERM received.*", line) for line in shown)


@pytest.mark.parametrize(("code", "expected"), [(7, 7), (0, 1)])
def test_one_process_exiting_stops_the_others_and_says_which(
    platform: Platform, tmp_path: Path, code: int, expected: int
) -> None:
    platform.add("alpha", shell=True)
    platform.add("beta", "--after", "alpha.grand.pid", "--exit-after", "3", "--code", str(code))
    with (tmp_path / "stdout.txt").open("wb") as stdout:
        supervisor = platform.start(stdout=stdout)
        wait_until(lambda: len(platform.pids()) == len(platform.pid_files), "every process wrote its pid")
        pids = platform.pids()

        assert supervisor.wait(timeout=DEADLINE_S) == expected

    assert_all_gone(pids)
    shown = (tmp_path / "stdout.txt").read_text()
    assert f"beta exited on its own (exit code {code}): stopping the platform" in shown
    assert "alpha stopped (killed by SIGTERM)" in shown
    # beta's last line is shown before the news of its exit.
    assert shown.index("beta line 2 ") < shown.index("beta exited on its own")


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(platform: Platform) -> None:
    platform.add("alpha", "--ignore-term")
    platform.add("beta", shell=True)
    supervisor = platform.start(stdout=subprocess.DEVNULL, grace=1.0)
    pids = platform.wait_started()

    sent = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)

    assert supervisor.wait(timeout=DEADLINE_S) == 0
    assert time.monotonic() - sent >= 1.0
    assert_all_gone(pids)
    assert any("sending SIGKILL to alpha" in line for line in platform.log("system"))


def test_a_second_signal_during_the_grace_period_kills_at_once(platform: Platform) -> None:
    platform.add("alpha", "--ignore-term")
    supervisor = platform.start(stdout=subprocess.DEVNULL, grace=120.0)
    pids = platform.wait_started()
    own = int((platform.root / "alpha.pid").read_text())

    supervisor.send_signal(signal.SIGINT)
    wait_until(lambda: any("sending SIGTERM to alpha" in line for line in platform.log("system")), "SIGTERM sent")
    assert alive(own)
    supervisor.send_signal(signal.SIGINT)

    assert supervisor.wait(timeout=DEADLINE_S) == 0
    assert_all_gone(pids)


def test_the_processes_die_with_a_killed_supervisor(platform: Platform) -> None:
    # Silent: a broken stdout cannot be what ends it.
    platform.add("alpha", "--after", "never")
    supervisor = platform.start(stdout=subprocess.DEVNULL)
    platform.wait_started()
    own = int((platform.root / "alpha.pid").read_text())

    supervisor.kill()
    supervisor.wait(timeout=DEADLINE_S)

    # Nothing runs in a SIGKILLed supervisor: the kernel ends the process
    # the entry's shell became; its own children are left to the cleanup.
    assert_all_gone([own])


def test_a_bad_procfile_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: touch started\nweb: touch started\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE_S
    )
    assert result.returncode == 2
    assert "'web' appears twice" in result.stderr
    assert not (tmp_path / "started").exists()
