"""The documentation works as written.

A newcomer copies commands out of README.md, QUICK-REFERENCE.md and
docs/*.md into a shell of a fresh clone where only `make run` or `make test`
has run. Every command found in their code blocks and inline code is checked
against what exists: make targets and their variables, management commands
and their options, scripts, bench and module options, npm scripts, API and
simulator routes with their methods, repository paths and environment
variables; the cheap ones are also run for real (`manage.py help CMD`,
`SCRIPT --help`, `make -n TARGET`). And every environment variable the
platform's code reads is in the README's settings table.

docs/BENCHMARKS.md is read like every page: bench/report.py writes it, but
its commands and paths are checked all the same; its figures are only
figures and nothing here judges them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DOCS = ["README.md", "QUICK-REFERENCE.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]

# Where a page's relative paths may start, besides the repository's root.
EXTRA_BASES = {"docs/BRIDGE.md": ["bridges/baileys"]}

# Files and folders the platform creates when it runs: named in the docs,
# never in the repository.
RUNTIME_PATHS = {
    ".run",
    ".run/secret-key",
    ".run/token-key",
    ".run/bridge-key",
    ".run/admin-password",
    ".run/redis",
    ".run/bridge/bridge.sqlite3",
    ".run/health-monitor.pid",
    "logs",
    "logs/<process>.log",
    "logs/health-monitor.log",
    "logs/health-monitor.out",
    "bridges/baileys/.bridge",
    "bridges/baileys/node_modules",
    "staticfiles",
}

# The address of the platform in the examples (docs/API.md says so).
DEFAULT_VARIABLES = {"BLAST": "http://127.0.0.1:8000"}
WEB_PORT, SIMULATOR_PORT, BRIDGE_PORT = 8000, 8765, 8766
EXAMPLE_ID = "6f1c2c55-3f35-4c1e-9a51-2d7b0c7d4b1e"

# Programs outside the virtualenv that a fresh Debian machine does not
# have on its PATH: what the docs must name by their .venv/bin/ path.
VENV_ONLY = {"python", "celery", "pytest", "py.test", "daphne", "django-admin"}
COMMAND_WORDS = {
    *VENV_ONLY,
    "honcho",
    "make",
    "python3",
    "node",
    "npm",
    "curl",
    "cd",
    "tail",
    "grep",
    "cat",
    "export",
    "alias",
    "printf",
    "openssl",
    "sqlite3",
    "umask",
}
PATH_COMMANDS = (".venv/", "scripts/", "./scripts/", "bench/", "./bench/")
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}

# Environment variables: the names the docs use for the platform's own.
ENV_MENTION = re.compile(r"\b(?:(?:BLAST|BRIDGE|BENCH|DEMO|HEALTH)_[A-Z0-9_]*[A-Z0-9]|WEB_PORT|GATEWAY_PORT)\b")
# What every shell has: never the platform's settings.
STANDARD_ENV = {"PATH", "PWD", "HOME", "UID", "USER", "SHELL", "TERM", "DEBIAN_FRONTEND", "PYTHONUNBUFFERED"}
MAKE_BUILTINS = {"MAKE", "SHELL", "CURDIR", "MAKEFLAGS", "MAKECMDGOALS"}


# --- Reading the pages -------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A code block: fenced (with its language) or indented (no language)."""

    doc: str
    line: int
    lang: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    doc: str
    text: str
    blocks: tuple[Block, ...]
    prose: str  # the text with every code block blanked out, lines kept


@cache
def page(doc: str) -> Page:
    text = (ROOT / doc).read_text()
    lines = text.splitlines()
    prose = list(lines)
    blocks: list[Block] = []
    i = 0
    previous_blank = True
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", line)
        if fence:
            indent, marker, lang = len(fence[1]), fence[2], fence[3]
            body: list[str] = []
            start = i + 1
            prose[i] = ""
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i].lstrip())
                prose[i] = ""
                i += 1
            if i < len(lines):
                prose[i] = ""
            blocks.append(Block(doc, start + 1, lang, tuple(body)))
            i += 1
            previous_blank = False
            continue
        if previous_blank and line.startswith("    ") and line.strip():
            start = i
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i])
                prose[i] = ""
                i += 1
            while body and not body[-1].strip():
                body.pop()
            indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            blocks.append(Block(doc, start + 1, "", tuple(b[indent:] for b in body)))
            previous_blank = True
            continue
        previous_blank = not line.strip()
        i += 1
    return Page(doc, text, tuple(blocks), "\n".join(prose))


def inline_spans(p: Page) -> Iterator[tuple[int, str]]:
    """Inline code of the prose (a span may wrap onto the next line)."""
    for match in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)?)`", p.prose):
        yield p.prose.count("\n", 0, match.start()) + 1, " ".join(match[1].split())


# --- Shell commands ----------------------------------------------------------


@dataclass
class Context:
    """What a page's commands share: its variables, aliases and the folder a
    block's `cd` moved to."""

    doc: str
    variables: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_VARIABLES))
    aliases: dict[str, list[str]] = field(default_factory=dict)
    cwd: Path = ROOT


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    inline: bool


# A command substitution, `$(...)`, one level deep.
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")


def _is_assignment(token: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token, re.DOTALL) is not None


def _first_word(text: str) -> str:
    words = text.lstrip("( ").split()
    while words and _is_assignment(words[0]):
        words.pop(0)
    return words[0] if words else ""


def _is_command(text: str, inline: bool, aliases: dict[str, list[str]]) -> bool:
    text = SUBSTITUTION.sub("SUBSTITUTION", text.strip())
    if text.startswith("$ "):
        text = text[2:]
    if not text or text.startswith("#"):
        return False
    word = _first_word(text)
    if not word:
        # Only assignments: a shell variable the next lines use (B=http://...).
        return not inline and re.fullmatch(r"(?:[A-Z_][A-Z0-9_]*=\S+\s*)+", text) is not None
    known = word in COMMAND_WORDS or word in aliases or word.startswith(PATH_COMMANDS)
    # Inline, a lone word names a tool or a file (`pytest`, `scripts/bench.sh`);
    # a command has arguments.
    return known and (not inline or len(text.split()) > 1)


def _logical_lines(block: Block) -> Iterator[tuple[int, str]]:
    """A block's lines joined across backslash continuations and quotes that
    stay open over several lines."""
    pending = ""
    start = 0
    for offset, line in enumerate(block.lines):
        if not pending:
            start = block.line + offset
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue
        yield start, pending
        pending = ""
    if pending:
        yield start, pending


def commands(doc: str) -> list[Command]:
    p = page(doc)
    found: list[Command] = []
    aliases: dict[str, list[str]] = {}
    for block in p.blocks:
        if block.lang not in SHELL_LANGUAGES:
            continue
        for line, text in _logical_lines(block):
            text = text[2:] if text.startswith("$ ") else text
            if _is_command(text, False, aliases):
                found.append(Command(doc, line, text, inline=False))
                alias = re.match(r"alias (\w+)=", text.strip())
                if alias:
                    aliases[alias[1]] = []
    for line, text in inline_spans(p):
        if _is_command(text, True, aliases):
            found.append(Command(doc, line, text, inline=True))
    return found


def segments(text: str) -> tuple[list[list[str]], list[str]]:
    """The simple commands of a line (split on pipes, `&&`, `;` and
    parentheses, redirections dropped) and the commands inside `$(...)`."""
    inner: list[str] = []

    def keep(match: re.Match[str]) -> str:
        inner.append(match[1])
        return f"__SUBSTITUTION{len(inner) - 1}__"

    lexer = shlex.shlex(SUBSTITUTION.sub(keep, text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[list[str]] = [[]]
    redirected = False
    for token in lexer:
        if token in {"|", "||", "&&", ";", "&", "(", ")"}:
            parts.append([])
        elif token and set(token) <= set("<>&"):
            redirected = True
        elif redirected:
            redirected = False
        else:
            parts[-1].append(token)
    return [part for part in parts if part], inner


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m[1], f"__{m[1]}__"), value)


# --- What exists -------------------------------------------------------------


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(m[1] for m in re.finditer(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M) if m[1] != ".PHONY")


@cache
def make_free_variables() -> frozenset[str]:
    """Variables the Makefile uses but does not define: set on make's command
    line or in the environment."""
    text = (ROOT / "Makefile").read_text()
    used = set(re.findall(r"\$[({]([A-Z][A-Z0-9_]*)[)}]", text))
    defined = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:?+]?=", text, re.M))
    return frozenset(used - defined - MAKE_BUILTINS)


@cache
def bench_steps() -> frozenset[str]:
    text = (ROOT / "scripts" / "bench.sh").read_text()
    listed = re.search(r"^all=\(([^)]*)\)", text, re.M)
    extra = re.search(r'^known=" \$\{all\[\*\]\} ([^"]*)"', text, re.M)
    assert listed and extra, "scripts/bench.sh no longer lists its benchmarks where this test reads them"
    return frozenset(listed[1].split() + extra[1].split())


@cache
def procfile_entries() -> tuple[str, ...]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return tuple(m[1] for line in lines if (m := re.match(r"^([\w-]+):", line)))


@cache
def script_subcommands(path: Path) -> frozenset[str]:
    """The words a script's `case` dispatches on (`start) ...`)."""
    return frozenset(re.findall(r"^\s*([a-z][\w-]*)\)", path.read_text(), re.M))


@cache
def npm_scripts(folder: Path) -> frozenset[str]:
    return frozenset(json.loads((folder / "package.json").read_text()).get("scripts", {}))


@cache
def management_commands() -> dict[str, str]:
    from django.core.management import get_commands

    return dict(get_commands())


def parse_management_command(name: str, args: list[str]) -> str | None:
    """Why ``manage.py name args`` would be refused by its parser, or None."""
    from django.core.management import CommandError, load_command_class

    command = load_command_class(management_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except (CommandError, SystemExit) as error:
        return str(error) or "refused"
    return None


@cache
def simulator_routes() -> tuple[tuple[str, re.Pattern[str]], ...]:
    from simulator.config import SimConfig
    from simulator.gateway import Simulator
    from simulator.server import build_app

    routes = []
    for route in build_app(Simulator(SimConfig())).router.routes():
        info = route.resource.get_info() if route.resource else {}
        pattern = info.get("pattern") or re.compile(re.escape(info.get("path", "")))
        routes.append((route.method, pattern))
    return tuple(routes)


def route_problem(method: str, path: str) -> str | None:
    """Why ``method path`` is no route of the platform's web process, or None."""
    from django.urls import Resolver404, resolve

    try:
        match = resolve(path)
    except Resolver404:
        return f"{path} matches no URL pattern"
    if match.view_name == "api:not-found":
        return f"{path} matches no API route (only the catch-all 404)"
    view = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    if view is None:
        # A function view: the docs only read these.
        return None if method in {"GET", "HEAD"} else f"{method} {path}: a function view, not known to take {method}"
    actions = getattr(match.func, "actions", None)
    allowed = set(actions) if actions else {m for m in view.http_method_names if hasattr(view, m)}
    if method.lower() not in allowed:
        return f"{method} {path}: the view allows only {', '.join(sorted(m.upper() for m in allowed))}"
    return None


def simulator_route_problem(method: str, path: str) -> str | None:
    for route_method, pattern in simulator_routes():
        if pattern.fullmatch(path) and route_method in {method, "*"}:
            return None
    if any(pattern.fullmatch(path) for _, pattern in simulator_routes()):
        return f"the simulator does not take {method} {path}"
    return f"the simulator has no route {path}"


def bridge_route_problem(method: str, path: str) -> str | None:
    server = (ROOT / "bridges" / "baileys" / "src" / "server.js").read_text()
    if f"req.method === '{method}' && pathname === '{path}'" in server:
        return None
    return f"the bridge does not serve {method} {path}"


def placeholders_to_ids(path: str) -> str:
    # Gateways are the one resource with integer ids (GET /api/v1/gateways).
    path = re.sub(r"<gateway_id>|\{gateway_id\}", "1", path)
    path = re.sub(r"<[^>]*>|\{[^}]*\}", EXAMPLE_ID, path)
    return re.sub(r"__[A-Za-z_][A-Za-z0-9_]*__", EXAMPLE_ID, path)


def endpoint_problem(method: str, url: str) -> str | None:
    """Why a request to ``url`` (a full URL or a path on the web process)
    reaches no route that takes ``method``, or None."""
    parts = urlsplit(url)
    path = placeholders_to_ids(parts.path or "/")
    port = parts.port or WEB_PORT if parts.scheme else WEB_PORT
    if parts.hostname not in {None, "127.0.0.1", "localhost"}:
        return f"{url}: not an address of the platform"
    if port == WEB_PORT:
        return route_problem(method, path)
    if port == SIMULATOR_PORT:
        return simulator_route_problem(method, path)
    if port == BRIDGE_PORT:
        return bridge_route_problem(method, path)
    return f"{url}: port {port} is none of the platform's"


# --- Environment variables ---------------------------------------------------

# env_int("X", ...) and the like in the settings; os.environ.get("X"),
# environ.get("X") on a mapping passed in, os.getenv("X"), os.environ["X"].
PY_ENV_READ = re.compile(
    r"""(?:env_(?:str|int|float|bool|list)\(|environ\.get\(|getenv\(|environ\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
)
JS_ENV_READ = re.compile(r"process\.env\.([A-Z][A-Z0-9_]*)|process\.env\[['\"]([A-Z][A-Z0-9_]*)['\"]\]")
JS_SETTING = re.compile(r"\(env, '([A-Z][A-Z0-9_]*)'")
SHELL_DEFAULTED = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?[-=?+]")
SHELL_REFERENCE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")
SHELL_ASSIGNED = re.compile(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=", re.M)


def _shell_reads(text: str) -> set[str]:
    defaulted = set(SHELL_DEFAULTED.findall(text))
    referenced = set(SHELL_REFERENCE.findall(text)) - set(SHELL_ASSIGNED.findall(text))
    return (defaulted | referenced) - STANDARD_ENV


def _python_sources(tests: bool) -> Iterator[Path]:
    """The project's Python files: the tests' only, or all but the tests'."""
    skip = {".venv", "node_modules", ".git", "migrations", "__pycache__", ".run", ".hypothesis"}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in skip]
        in_tests = "tests" in Path(folder).relative_to(ROOT).parts
        if in_tests == tests:
            yield from (Path(folder) / name for name in files if name.endswith(".py"))


@cache
def operator_env_reads() -> dict[str, str]:
    """Every environment variable the platform's own code reads, and where:
    settings, apps, bench, scripts, Procfile, Makefile and the bridge."""
    found: dict[str, str] = {}

    def add(names: set[str] | list[str], where: Path | str) -> None:
        for name in names:
            found.setdefault(name, str(where))

    for path in _python_sources(tests=False):
        add(PY_ENV_READ.findall(path.read_text()), path.relative_to(ROOT))
    for path in sorted((ROOT / "scripts").glob("*.sh")):
        add(_shell_reads(path.read_text()), path.relative_to(ROOT))
    add(_shell_reads((ROOT / "Procfile").read_text()), "Procfile")
    add(set(make_free_variables()), "Makefile")
    for path in sorted((ROOT / "bridges" / "baileys" / "src").rglob("*.js")):
        text = path.read_text()
        names = set(JS_SETTING.findall(text)) | {a or b for a, b in JS_ENV_READ.findall(text)}
        add(names, path.relative_to(ROOT))
    return found


@cache
def all_env_reads() -> frozenset[str]:
    """The operators' variables and those the tests and CI read."""
    names = set(operator_env_reads())
    for path in _python_sources(tests=True):
        names.update(PY_ENV_READ.findall(path.read_text()))
    for path in (ROOT / "bridges" / "baileys" / "test").rglob("*.js"):
        names.update(a or b for a, b in JS_ENV_READ.findall(path.read_text()))
    names.update(_shell_reads((ROOT / ".ci" / "run").read_text()))
    return frozenset(names)


def readme_settings() -> set[str]:
    """The variables named in the first column of the README's settings table."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Settings\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no Settings section"
    names: set[str] = set()
    for row in re.findall(r"^\|([^|\n]*)\|", section[1], re.M):
        names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", row))
    return names


# --- Checking one command ----------------------------------------------------


@dataclass(frozen=True)
class RealRun:
    """A command run for real (its output must name the options given to it)."""

    argv: tuple[str, ...]
    cwd: str


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    # Each real run, with the options the docs give it and where.
    runs: dict[RealRun, dict[str, str]] = field(default_factory=dict)

    def run(self, where: str, argv: list[str] | tuple[str, ...], options: list[str], cwd: Path = ROOT) -> None:
        given = self.runs.setdefault(RealRun(tuple(argv), str(cwd)), {"": where})
        for option in options:
            given.setdefault(option, where)


def _options(args: list[str]) -> list[str]:
    """The option names given (``--name`` of ``--name=value`` too)."""
    return sorted({a.split("=", 1)[0] for a in args if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", a)} - {"--help", "-h"})


def _bare(args: list[str]) -> list[str]:
    """A synopsis's arguments without its brackets: ``[--once]`` is ``--once``."""
    return [a.strip("[]") for a in args if a.strip("[]") and a not in {"...", "|"}]


def _resolve(path: str, ctx: Context) -> Path | None:
    for base in [ctx.cwd, ROOT, *(ROOT / b for b in EXTRA_BASES.get(ctx.doc, []))]:
        candidate = base / path
        if candidate.exists():
            return candidate
    return None


class Checker:
    def __init__(self, ctx: Context, findings: Findings, where: str) -> None:
        self.ctx = ctx
        self.findings = findings
        self.where = where

    def problem(self, what: str) -> None:
        self.findings.problems.append(f"{self.where}: {what}")

    def command(self, text: str) -> None:
        try:
            parts, inner = segments(text)
        except ValueError as error:
            self.problem(f"not a shell command ({error})")
            return
        for nested in inner:
            self.command(nested)
        for argv in parts:
            self.simple(argv)

    def simple(self, argv: list[str]) -> None:
        env: dict[str, str] = {}
        while argv and _is_assignment(argv[0]):
            name, value = argv.pop(0).split("=", 1)
            env[name] = value
        if argv and argv[0] == "export":
            for token in argv[1:]:
                if _is_assignment(token):
                    name, value = token.split("=", 1)
                    env[name] = value
            argv = []
        if not argv:
            self.ctx.variables.update({k: expand(v, self.ctx.variables) for k, v in env.items()})
            for name in env:
                if ENV_MENTION.fullmatch(name) and name not in all_env_reads():
                    self.problem(f"{name} is read by nothing")
            return
        for name in env:
            if name not in all_env_reads():
                self.problem(f"{name}: no code reads this variable")
        program, args = argv[0], argv[1:]
        if program in self.ctx.aliases:
            program, args = self.ctx.aliases[program][0], self.ctx.aliases[program][1:] + args
        if program == "alias":
            for token in args:
                name, _, value = token.partition("=")
                self.ctx.aliases[name] = shlex.split(value)
            return
        if program == "honcho" or program.endswith("/honcho"):
            self.problem("`make run` runs the Procfile with scripts/procfile.py, not honcho")
        elif program in VENV_ONLY:
            self.problem(f"bare `{program}`: outside .venv there is none (write .venv/bin/{program} or make manage)")
        elif program == "make":
            self.make(args)
        elif program.startswith(".venv/bin/"):
            self.venv(program, args)
        elif program == "python3":
            self.system_python(args)
        elif program == "node":
            self.node(args)
        elif program == "npm":
            self.npm(args)
        elif program == "curl":
            self.curl(args)
        elif program == "cd":
            self.cd(args)
        elif program.startswith(PATH_COMMANDS):
            self.script(program, args)
        elif program in {"tail", "grep", "cat"}:
            self.files(args)

    # make

    def make(self, args: list[str]) -> None:
        variables = dict(a.split("=", 1) for a in args if _is_assignment(a))
        targets = [a for a in args if not _is_assignment(a) and not a.startswith("-")] or ["help"]
        for target in targets:
            if target not in make_targets():
                self.problem(f"make has no target {target!r} (Makefile: {', '.join(sorted(make_targets()))})")
        for name in variables:
            if name not in make_free_variables():
                self.problem(f"the Makefile does not read {name}")
        if "manage" in targets:
            # Without ARGS, manage.py lists its commands.
            self.manage(shlex.split(variables.get("ARGS", "")))
        if "test" in targets:
            self.pytest_args(shlex.split(variables.get("ARGS", "")))
        if "bench" in targets:
            for step in variables.get("BENCH", "").split():
                if step not in bench_steps():
                    self.problem(f"make bench has no benchmark {step!r} ({', '.join(sorted(bench_steps()))})")
        if all(t in make_targets() for t in targets):
            self.findings.run(self.where, ["make", "-s", "-n", *args], [])

    # Python

    def venv(self, program: str, args: list[str]) -> None:
        executable = ROOT / program
        if not os.access(executable, os.X_OK):
            self.problem(f"{program} does not exist")
            return
        name = executable.name
        if name in {"python", "python3"}:
            self.python(program, args)
        elif name == "celery":
            self.celery(program, args)
        elif name == "pytest":
            self.pytest_args(args)

    def python(self, program: str, args: list[str]) -> None:
        if not args:
            return
        if args[0] == "manage.py":
            self.manage(args[1:])
        elif args[0] == "-m" and len(args) > 1:
            module = args[1]
            if importlib.util.find_spec(module) is None:
                self.problem(f"no module {module}")
                return
            if module == "pytest":
                self.pytest_args(args[2:])
            self.objects(args[2:])
            options = _options(args[2:])
            if options:
                self.findings.run(self.where, [program, "-m", module, "--help"], options)
        elif args[0].endswith(".py"):
            script = _resolve(args[0], self.ctx)
            if script is None:
                self.problem(f"no file {args[0]}")
                return
            options = _options(args[1:])
            self.findings.run(self.where, [program, args[0], "--help"], options, self.ctx.cwd)

    def system_python(self, args: list[str]) -> None:
        """Debian's python3 has the standard library only."""
        if args[:1] == ["-m"] and len(args) > 1:
            if args[1].split(".")[0] not in sys.stdlib_module_names:
                self.problem(f"python3 -m {args[1]}: not in the standard library (use .venv/bin/python)")
        elif args[:1] != ["-c"]:
            self.problem("python3 outside .venv has none of the platform's packages (use .venv/bin/python)")

    def manage(self, args: list[str]) -> None:
        args = _bare(args)
        if not args:
            return
        name, rest = args[0], args[1:]
        if name == "help" and rest:
            name, rest = rest[0], ["--help"]
        if name not in management_commands():
            self.problem(f"manage.py has no command {name!r}")
            return
        given = [a for a in rest if a not in {"--help", "-h"}]
        if len(given) == len(rest):
            # A synopsis's placeholders (NAME, URL, ID) stand for any value.
            values = ["1" if re.fullmatch(r"[A-Z][A-Z0-9_]+", a) else a for a in given]
            refused = parse_management_command(name, values)
            if refused:
                self.problem(f"manage.py {name} {' '.join(given)}: {refused}")
        self.findings.run(self.where, [str(VENV_PYTHON.relative_to(ROOT)), "manage.py", "help", name], _options(given))

    def celery(self, program: str, args: list[str]) -> None:
        if args[:2] != ["-A", "blast"] or len(args) < 3:
            self.problem("celery runs the platform's app: .venv/bin/celery -A blast worker|beat ...")
            return
        self.objects(args[3:])
        self.findings.run(self.where, [program, "-A", "blast", args[2], "--help"], _options(args[3:]))

    def objects(self, args: list[str]) -> None:
        """``module:attribute`` arguments (an ASGI app, a scheduler) exist."""
        for arg in args:
            if re.fullmatch(r"[a-z_][\w.]*:[A-Za-z_]\w*", arg):
                module, attribute = arg.split(":")
                try:
                    found = hasattr(importlib.import_module(module), attribute)
                except ImportError:
                    found = False
                if not found:
                    self.problem(f"{arg} does not exist")

    def pytest_args(self, args: list[str]) -> None:
        for arg in args:
            if not arg.startswith("-") and "/" in arg and _resolve(arg.split("::")[0], self.ctx) is None:
                self.problem(f"no test path {arg}")

    # Node

    def node(self, args: list[str]) -> None:
        for arg in args:
            if arg.endswith(".js") and _resolve(arg, self.ctx) is None:
                self.problem(f"no file {arg} (from {self.ctx.cwd.relative_to(ROOT) or '.'})")

    def npm(self, args: list[str]) -> None:
        folder = self.ctx.cwd
        if not (folder / "package.json").exists():
            if self.ctx.cwd != ROOT:
                self.problem(f"npm in {folder.relative_to(ROOT)}: no package.json there")
                return
            folder = ROOT / "bridges" / "baileys"
        if not args:
            return
        script = args[1] if args[0] == "run" and len(args) > 1 else args[0]
        if (args[0] == "run" or script in {"test", "start"}) and script not in npm_scripts(folder):
            self.problem(f"{folder.relative_to(ROOT)}/package.json has no script {script!r}")

    # HTTP

    def curl(self, args: list[str]) -> None:
        method = None
        sends_body = False
        urls: list[str] = []
        takes_value = {"-X", "--request", "-H", "--header", "-d", "--data", "--data-binary", "-F", "--form", "-o"}
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in takes_value:
                value = args[i + 1] if i + 1 < len(args) else ""
                if arg in {"-X", "--request"}:
                    method = value
                if arg in {"-d", "--data", "--data-binary", "-F", "--form"}:
                    sends_body = True
                i += 2
                continue
            if not arg.startswith("-"):
                urls.append(arg)
            i += 1
        method = method or ("POST" if sends_body else "GET")
        for url in urls:
            problem = endpoint_problem(method, expand(url, self.ctx.variables))
            if problem:
                self.problem(problem)

    # Files

    def cd(self, args: list[str]) -> None:
        target = _resolve(args[0], self.ctx) if args else ROOT
        if target is None or not target.is_dir():
            self.problem(f"cd {args[0]}: no such folder")
            return
        self.ctx.cwd = target.resolve()

    def script(self, program: str, args: list[str]) -> None:
        path = _resolve(program, self.ctx)
        if path is None or not path.is_file() or not os.access(path, os.X_OK):
            self.problem(f"{program} is not an executable file")
            return
        choices = script_subcommands(path)
        if choices and args and not args[0].startswith("-") and args[0] not in choices:
            self.problem(f"{program} does not take {args[0]!r} ({', '.join(sorted(choices))})")

    def files(self, args: list[str]) -> None:
        for arg in args[1:]:
            if arg.endswith((".log", ".out")) and not known_path(arg, self.ctx):
                self.problem(f"{arg}: nothing writes this file")


def known_path(path: str, ctx: Context) -> bool:
    path = path.rstrip("/")
    if path.startswith("./"):
        path = path[2:]
    if path in RUNTIME_PATHS or path in {f"logs/{name}.log" for name in procfile_entries()}:
        return True
    if "*" in path:
        return any(ROOT.glob(path))
    return _resolve(path, ctx) is not None


# --- The checks --------------------------------------------------------------


def check_page(doc: str) -> Findings:
    findings = Findings()
    ctx = Context(doc)
    blocks = {block.line: block for block in page(doc).blocks}
    current_block = None
    for cmd in commands(doc):
        block = next((b for start, b in blocks.items() if start <= cmd.line < start + len(b.lines)), None)
        if cmd.inline or block is not current_block:
            ctx.cwd = ROOT
            current_block = None if cmd.inline else block
        Checker(ctx, findings, f"{doc}:{cmd.line}: {cmd.text.strip()!r}").command(cmd.text)
    return findings


PATH_TOKEN = re.compile(r"(?<![\w./:@$~%<>{}\\-])((?:\.\.?/)*\.?[\w-][\w.-]*/[\w.*<>/-]*)")


def mentioned_paths(doc: str) -> Iterator[tuple[int, str]]:
    text = page(doc).text
    tops = {p.name for p in ROOT.iterdir()} | {".run", "logs", ".venv", "shared"}
    for base in EXTRA_BASES.get(doc, []):
        tops |= {p.name for p in (ROOT / base).iterdir()}
    for match in PATH_TOKEN.finditer(text):
        path = match[1].rstrip(".")
        first = path.split("/")[0]
        if path.startswith("../") or first in tops or path.endswith(".md"):
            yield text.count("\n", 0, match.start()) + 1, path


@pytest.mark.parametrize("doc", DOCS)
def test_every_documented_command_names_what_exists(doc: str) -> None:
    assert check_page(doc).problems == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_repository_path_mentioned_exists(doc: str) -> None:
    ctx = Context(doc)
    missing = [f"{doc}:{line}: {path}" for line, path in mentioned_paths(doc) if not known_path(path, ctx)]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_endpoint_in_the_prose_is_a_route(doc: str) -> None:
    """`GET /api/v1/...` in tables and text: a route that takes that method."""
    problems = []
    for line, text in inline_spans(page(doc)):
        match = re.fullmatch(r"([A-Z]+(?:/[A-Z]+)*) (/\S*)", text)
        if not match or not set(match[1].split("/")) <= HTTP_METHODS:
            continue
        path = re.split(r"\[?\?", match[2])[0]
        for method in match[1].split("/"):
            if path.startswith(("/v1/", "/_control/")):
                problem = simulator_route_problem(method, placeholders_to_ids(path))
            else:
                problem = endpoint_problem(method, path)
            if problem:
                problems.append(f"{doc}:{line}: {text}: {problem}")
    assert problems == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_environment_variable_named_is_read_by_the_code(doc: str) -> None:
    text = page(doc).text
    unknown = sorted(
        {
            f"{doc}:{text.count(chr(10), 0, m.start()) + 1}: {m[0]}"
            for m in ENV_MENTION.finditer(text)
            if m[0] not in all_env_reads()
        }
    )
    assert unknown == []


def test_no_page_points_outside_the_repository_or_at_tools_it_no_longer_uses() -> None:
    stale = []
    for doc in DOCS:
        for number, line in enumerate(page(doc).text.splitlines(), 1):
            if re.search(r"\bhoncho\b", line, re.I):
                stale.append(f"{doc}:{number}: honcho (`make run` runs scripts/procfile.py)")
            if re.search(r"(?<![\w.])\.\./|\bshared/", line):
                stale.append(f"{doc}:{number}: a file outside the repository")
    assert stale == []


def test_the_readme_settings_table_names_every_variable_the_code_reads() -> None:
    table = readme_settings()
    missing = sorted(f"{name} (read by {where})" for name, where in operator_env_reads().items() if name not in table)
    assert missing == []
    assert sorted(table - all_env_reads()) == [], "the table names variables nothing reads"


def test_the_checker_finds_stale_commands() -> None:
    """The parser and the checks catch what a newcomer would trip over."""
    lines = [
        "python manage.py migrate",
        ".venv/bin/python manage.py no_such_command",
        ".venv/bin/python manage.py seed_demo --no-such-option",
        "make no-such-target",
        "curl -X DELETE $BLAST/api/v1/gateways",
        "curl $BLAST/api/v1/no-such-thing",
        "grep -E 'x' worker.log",
        "honcho start -f Procfile",
    ]
    findings = Findings()
    ctx = Context("STALE.md")
    for number, line in enumerate(lines, 1):
        assert _is_command(line, False, {}), line
        Checker(ctx, findings, f"STALE.md:{number}").command(line)
    assert [p.split(":")[1] for p in findings.problems] == [str(n) for n in range(1, len(lines) + 1)]


def _run(run: RealRun) -> tuple[RealRun, int, str]:
    try:
        done = subprocess.run(
            run.argv, cwd=run.cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return run, -1, str(error)
    return run, done.returncode, done.stdout + done.stderr


def test_documented_commands_run_and_know_their_options() -> None:
    """`manage.py help CMD`, `SCRIPT --help`, `celery ... --help` and `make -n`
    for every documented command: each runs and names every option given."""
    runs: dict[RealRun, dict[str, str]] = {}
    for doc in DOCS:
        for run, given in check_page(doc).runs.items():
            for option, where in given.items():
                runs.setdefault(run, {}).setdefault(option, where)
    assert any(run.argv[:2] == ("make", "-s") for run in runs)
    assert any("manage.py" in run.argv for run in runs)
    failures = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for run, code, output in pool.map(_run, runs):
            if code != 0:
                failures.append(f"{runs[run]['']}: `{' '.join(run.argv)}` exited {code}: {output.strip()[-300:]}")
                continue
            for option, where in runs[run].items():
                if option and not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", output):
                    failures.append(f"{where}: `{' '.join(run.argv)}` does not know {option}")
    assert failures == []


def test_make_manage_runs_manage_py_with_make_runs_environment() -> None:
    dry = subprocess.run(
        ["make", "-s", "-n", "manage", "ARGS=check --deploy"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "scripts/ensure-redis.sh" in dry.stdout
    assert ".venv/bin/python manage.py check --deploy" in dry.stdout
    real = subprocess.run(
        ["make", "-s", "manage", "ARGS=help create_tenant"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert real.returncode == 0, real.stderr
    assert real.stdout.startswith("usage: manage.py create_tenant"), real.stdout
