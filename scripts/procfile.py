#!/usr/bin/env python3
"""Run every entry of a Procfile in the foreground and stop them all together.

``make run`` starts the platform with this supervisor (standard library only):

    python scripts/procfile.py [-f Procfile] [--log-dir logs] [NAME ...]

Each entry runs as ``/bin/sh -c LINE``, so ``$VAR``, ``${VAR:-default}`` and
``$(cmd)`` expand as they would in a shell. Every entry gets its own session
and process group: the terminal's Ctrl-C reaches only the supervisor, which
then stops each group, grandchildren included.

Output is prefixed ``HH:MM:SS name | line`` on stdout and appended, with date
and time and without colours, to ``<log-dir>/<name>.log``; the supervisor's
own lines go to ``<log-dir>/system.log``. Stdout is written by a thread that
never blocks the supervisor: when it fails (the reader of a pipe died, the
terminal closed) or stalls, the platform keeps running and the log files keep
every line.

Stopping: on SIGINT, SIGTERM or SIGHUP, or when any entry exits on its own,
every group gets SIGTERM; groups still alive after ``BLAST_STOP_GRACE_S``
seconds (default 5) get SIGKILL. A second signal during that grace kills at
once.

Exit status: 0 when stopped by a signal; when an entry exited on its own, that
entry's exit code (128+N if signal N killed it, 1 if it exited with 0: the
platform is meant to run until asked to stop); 1 when an entry could not be
started; 2 for a bad command line or Procfile, or a log directory it cannot
write (nothing is started then).

If the supervisor itself is SIGKILLed, the kernel (Linux) kills the process
each entry's shell became, or the shell; what those had forked is left.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# The same entry syntax honcho and foreman accept; other lines are ignored.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
SYSTEM = "system"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_GRACE_S = 5.0
# After SIGKILL a group is normally gone at once; past this we stop waiting.
KILL_WAIT_S = 3.0
# A line longer than this without a newline is shown in pieces.
MAX_LINE = 64 * 1024
# Lines held for a slow terminal before some are left to the log files only.
TERMINAL_QUEUE = 10_000
COLOURS = ("36", "33", "32", "35", "31", "34", "36;1", "33;1", "32;1", "35;1", "31;1", "34;1")
ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class ProcfileError(Exception):
    """The Procfile or the names asked for cannot be run."""


def parse_procfile(text: str) -> dict[str, str]:
    """Entries in file order; a duplicate or reserved name is an error."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        match = PROCFILE_LINE.match(line)
        if not match:
            continue
        name, command = match.group(1), match.group(2).strip()
        if name == SYSTEM:
            raise ProcfileError(f"the name {SYSTEM!r} is reserved for the supervisor's own lines")
        if name in entries:
            raise ProcfileError(f"{name!r} appears twice")
        entries[name] = command
    return entries


def stop_grace(environ: Mapping[str, str]) -> float:
    raw = environ.get("BLAST_STOP_GRACE_S", "")
    if not raw:
        return DEFAULT_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        raise ProcfileError(f"BLAST_STOP_GRACE_S={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ProcfileError(f"BLAST_STOP_GRACE_S={raw!r} is negative")
    return value


def _prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, else None (the supervisor then works without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


def describe(status: int) -> str:
    """A waitstatus-derived exit code, as people read it."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit code {status}"


def exit_code_for(status: int) -> int:
    """The supervisor's exit code when an entry stopped on its own."""
    if status < 0:
        return 128 - status
    return status or 1


class Terminal:
    """Stdout, written from its own thread so that a full pipe, a stopped
    reader or a closed terminal never holds up the supervisor. After a failed
    write it stays silent: the log files carry on alone."""

    def __init__(self, fd: int, on_failure: Callable[[OSError], None]) -> None:
        self.fd = fd
        self.failed = False
        self._on_failure = on_failure
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=TERMINAL_QUEUE)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="terminal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            if self._dropped:
                notice = f"[{self._dropped} lines not shown here: the terminal was too slow; see the log files]\n"
                self._queue.put_nowait(notice.encode())
                self._dropped = 0
            self._queue.put_nowait(data)
        except queue.Full:
            self._dropped += 1

    def close(self, timeout: float) -> None:
        """Let queued lines out for up to ``timeout`` seconds, then give up."""
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
            except OSError as error:
                self.failed = True
                self._on_failure(error)
                return


@dataclass
class Entry:
    name: str
    command: str
    colour: str
    log: IO[str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    pid: int = 0
    status: int | None = None
    pending: bytes = b""
    log_failed: bool = False
    fd: int | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, entries: dict[str, str], log_dir: Path, grace: float, stdout_fd: int = 1) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.entries = [
            Entry(name, command, COLOURS[i % len(COLOURS)]) for i, (name, command) in enumerate(entries.items())
        ]
        self.by_pid: dict[int, Entry] = {}
        self.width = max(len(SYSTEM), *(len(name) for name in entries))
        self.colour = os.isatty(stdout_fd)
        self.terminal = Terminal(stdout_fd, self._terminal_failed)
        self.system_log: IO[str] | None = None
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.reason: str | None = None
        self.exit_code = 0
        self.kill_at: float | None = None
        self.give_up_at: float | None = None
        self._lock = threading.Lock()
        self._prctl = _prctl()
        self._wake_r, self._wake_w = os.pipe()

    # Output -------------------------------------------------------------

    def emit(self, name: str, text: str, log: IO[str] | None, colour: str | None = None) -> None:
        now = time.time()
        prefix = f"{time.strftime('%H:%M:%S', time.localtime(now))} {name.ljust(self.width)} | "
        if self.colour and colour:
            prefix = f"\x1b[0m\x1b[{colour}m{prefix}\x1b[0m"
        self.terminal.write((prefix + text + "\n").encode("utf-8", "replace"))
        if log is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            plain = ANSI_ESCAPE.sub(b"", text.encode("utf-8", "replace")).decode("utf-8", "replace")
            self._log_write(log, f"{stamp} {plain}\n")

    def system(self, text: str, entry: Entry | None = None) -> None:
        """A supervisor line: on stdout, in system.log and in the entry's log."""
        self.emit(SYSTEM, text, self.system_log)
        if entry is not None and entry.log is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._log_write(entry.log, f"{stamp} [{SYSTEM}] {text}\n")

    def _log_write(self, log: IO[str], line: str) -> None:
        with self._lock:
            try:
                log.write(line)
                log.flush()
            except (OSError, ValueError):
                pass

    def _terminal_failed(self, error: OSError) -> None:
        if self.system_log is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._log_write(
                self.system_log, f"{stamp} stdout failed ({error.strerror or error}); writing the log files only\n"
            )

    def _lines(self, entry: Entry, data: bytes, final: bool = False) -> None:
        buffer = entry.pending + data
        *lines, rest = buffer.split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if final and rest:
            lines.append(rest)
            rest = b""
        entry.pending = rest
        for line in lines:
            self.emit(entry.name, line.rstrip(b"\r").decode("utf-8", "replace"), entry.log, entry.colour)

    # Processes ----------------------------------------------------------

    def _preexec(self) -> Callable[[], None] | None:
        """In the child before exec: die with the supervisor, even if it is
        SIGKILLed (Linux). Covers the entry's own process; what it forks
        later is stopped through its process group instead."""
        prctl = self._prctl
        if prctl is None:
            return None
        parent = os.getpid()

        def preexec() -> None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before prctl
                os.kill(os.getpid(), signal.SIGKILL)

        return preexec

    def open_logs(self) -> None:
        """All log files, before any process starts: a failure here starts nothing."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.system_log = open(self.log_dir / f"{SYSTEM}.log", "a", encoding="utf-8", errors="replace")
        for entry in self.entries:
            entry.log = open(self.log_dir / f"{entry.name}.log", "a", encoding="utf-8", errors="replace")

    def start(self) -> None:
        if self._prctl is not None:
            # Orphaned grandchildren come back to the supervisor, which reaps
            # them: no zombie keeps a process group looking alive.
            self._prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        environ = dict(os.environ)
        environ.setdefault("PYTHONUNBUFFERED", "1")
        preexec = self._preexec()
        for entry in self.entries:
            if self.reason is not None:
                break
            try:
                entry.popen = subprocess.Popen(
                    ["/bin/sh", "-c", entry.command],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=environ,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            except OSError as error:
                self.system(f"{entry.name} could not start: {error}", entry)
                self.exit_code = 1
                self.reason = f"{entry.name} could not start"
                break
            entry.pid = entry.popen.pid
            self.by_pid[entry.pid] = entry
            assert entry.popen.stdout is not None
            entry.fd = entry.popen.stdout.fileno()
            os.set_blocking(entry.fd, False)
            self.selector.register(entry.fd, selectors.EVENT_READ, entry)
            self.system(f"{entry.name} started (pid={entry.pid})", entry)
        # Started only now: no thread exists while the children fork.
        self.terminal.start()

    def reap(self) -> None:
        """Collect every exited child, the entries' shells and any orphan."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.by_pid.get(pid)
            if entry is None or entry.status is not None:
                continue
            entry.status = os.waitstatus_to_exitcode(wait_status)
            if entry.fd is not None:
                self._read(entry)  # its last words before the news of its exit
            if entry.popen is not None:
                entry.popen.returncode = entry.status
            if self.reason is None:
                self.reason = f"{entry.name} stopped"
                self.exit_code = exit_code_for(entry.status)
                self.system(f"{entry.name} exited on its own ({describe(entry.status)}): stopping the platform", entry)
                self.terminate()
            else:
                self.system(f"{entry.name} stopped ({describe(entry.status)})", entry)

    def group_alive(self, entry: Entry) -> bool:
        if not entry.pid:
            return False
        try:
            os.killpg(entry.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal_groups(self, sig: signal.Signals) -> None:
        for entry in self.entries:
            if self.group_alive(entry):
                self.system(f"sending {sig.name} to {entry.name} (process group {entry.pid})", entry)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry.pid, sig)

    def terminate(self) -> None:
        self._signal_groups(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.grace

    def kill(self) -> None:
        self.kill_at = None
        self._signal_groups(signal.SIGKILL)
        self.give_up_at = time.monotonic() + KILL_WAIT_S

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.reason is None:
            self.reason = f"{name} received"
            self.system(f"{name} received: stopping every process (a second one kills them at once)")
            self.terminate()
        elif self.give_up_at is None:
            self.system(f"{name} received again: killing every process now")
            self.kill()

    # Loop ---------------------------------------------------------------

    def _install_signals(self) -> None:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)

        def record(signum: int, _frame: object) -> None:
            self.signals.append(signum)

        for sig in STOP_SIGNALS:
            signal.signal(sig, record)
        # Only to wake the loop: exits are collected by reap().
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)

    def _read(self, entry: Entry, chunks: int = 8) -> None:
        """What the entry wrote, a few chunks at a time: a chatty process
        cannot keep the loop from signals and exits."""
        assert entry.fd is not None
        for _ in range(chunks):
            try:
                data = os.read(entry.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lines(entry, b"", final=True)
                self.selector.unregister(entry.fd)
                os.close(entry.fd)
                if entry.popen is not None and entry.popen.stdout is not None:
                    with contextlib.suppress(OSError):
                        entry.popen.stdout.close()
                entry.fd = None
                return
            self._lines(entry, data)

    def finished(self) -> bool:
        if self.reason is None:
            return False
        if any(entry.pid and entry.status is None for entry in self.entries):
            return False
        return not any(self.group_alive(entry) for entry in self.entries)

    def run(self) -> int:
        self._install_signals()
        self.start()
        if self.reason is not None and self.kill_at is None:
            self.terminate()
        while True:
            while self.signals:
                self.on_signal(self.signals.pop(0))
            self.reap()
            if self.finished():
                break
            now = time.monotonic()
            if self.kill_at is not None and now >= self.kill_at:
                still = ", ".join(entry.name for entry in self.entries if self.group_alive(entry))
                self.system(f"still running after {self.grace:g} s: {still}")
                self.kill()
            if self.give_up_at is not None and now >= self.give_up_at:
                still = ", ".join(entry.name for entry in self.entries if self.group_alive(entry))
                self.system(f"not gone {KILL_WAIT_S:g} s after SIGKILL, leaving them: {still}")
                break
            deadlines = [t for t in (self.kill_at, self.give_up_at) if t is not None]
            timeout = max(0.0, min([now + 0.5, *deadlines]) - now)
            for key, _events in self.selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                else:
                    self._read(key.data)
        # What the last processes wrote before they went.
        for entry in self.entries:
            if entry.fd is not None:
                self._read(entry, chunks=64)
        self.system(f"every process has stopped ({self.reason})")
        self.terminal.close(timeout=1.0)
        for entry in self.entries:
            if entry.log is not None:
                entry.log.close()
        if self.system_log is not None:
            self.system_log.close()
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the entries of a Procfile; stop them all together.")
    parser.add_argument("-f", "--procfile", default="Procfile", help="the Procfile (default: ./Procfile)")
    parser.add_argument("--log-dir", default="logs", help="where <name>.log files go (default: ./logs)")
    parser.add_argument("names", nargs="*", help="only these entries (default: all)")
    args = parser.parse_args(argv)
    try:
        entries = parse_procfile(Path(args.procfile).read_text(encoding="utf-8"))
        grace = stop_grace(os.environ)
    except OSError as error:
        print(f"procfile: cannot read {args.procfile}: {error.strerror}", file=sys.stderr)
        return 2
    except ProcfileError as error:
        print(f"procfile: {args.procfile}: {error}", file=sys.stderr)
        return 2
    if args.names:
        unknown = [name for name in args.names if name not in entries]
        if unknown:
            print(f"procfile: not in {args.procfile}: {', '.join(unknown)}", file=sys.stderr)
            return 2
        entries = {name: entries[name] for name in args.names}
    if not entries:
        print(f"procfile: no entries in {args.procfile}", file=sys.stderr)
        return 2
    supervisor = Supervisor(entries, Path(args.log_dir), grace)
    try:
        supervisor.open_logs()
    except OSError as error:
        print(f"procfile: cannot write the logs in {args.log_dir}: {error}", file=sys.stderr)
        return 2
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
