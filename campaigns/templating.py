"""Message templates: ``{{field}}`` variables and ``{Hi|Hello}`` spintax, pure.

Syntax:

- ``{{ name }}`` is replaced by the contact's field ``name`` (spaces inside
  the braces are ignored; a name is a letter or ``_`` then letters, digits or
  ``_``). ``{{phone}}`` is the contact's number; other names are the contact
  list's custom fields. A contact without a value gets the empty string.
- ``{a|b|c}`` is replaced by one of its options, at random; options may be
  empty (``{Hi |}``), hold variables, and nest (``{Hi|Hello {there|friend}}``).
  A group needs at least two options: ``{name}`` is refused (it is almost
  always a mistyped variable).
- ``\\{``, ``\\}``, ``\\|`` and ``\\\\`` are literal characters; a ``|`` outside
  a group is literal too.

:func:`parse` turns a text into a :class:`Template` or raises
:class:`TemplateError` with a message for a person, naming the line and
column. :meth:`Template.render` needs the field values and a random source;
a seeded ``random.Random`` makes a contact's message reproducible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
BUILTIN_FIELDS = frozenset({"phone"})
MAX_DEPTH = 20


class TemplateError(ValueError):
    """The template cannot be used; ``str()`` explains why, for a person."""


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Spin:
    options: tuple[tuple[Node, ...], ...]


Node = Text | Var | Spin


def _where(source: str, position: int) -> str:
    line = source.count("\n", 0, position) + 1
    column = position - (source.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0

    def fail(self, message: str, position: int) -> TemplateError:
        return TemplateError(f"{message} (at {_where(self.source, position)}).")

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self.sequence(depth=0, inside=False)
        if stop is not None:  # pragma: no cover - sequence() raises first
            raise self.fail("Unexpected character", self.pos)
        return nodes

    def sequence(self, depth: int, inside: bool) -> tuple[tuple[Node, ...], str | None]:
        """Nodes up to the end, or (inside a group) up to ``|`` or ``}``."""
        nodes: list[Node] = []
        text: list[str] = []

        def flush() -> None:
            if text:
                nodes.append(Text("".join(text)))
                text.clear()

        source = self.source
        while self.pos < len(source):
            ch = source[self.pos]
            if ch == "\\" and self.pos + 1 < len(source) and source[self.pos + 1] in "{}|\\":
                text.append(source[self.pos + 1])
                self.pos += 2
            elif ch == "{" and source.startswith("{{", self.pos):
                flush()
                nodes.append(self.variable())
            elif ch == "{":
                flush()
                nodes.append(self.group(depth + 1))
            elif ch == "}":
                if not inside:
                    raise self.fail("'}' closes nothing: write \\} for a literal brace", self.pos)
                flush()
                return tuple(nodes), "}"
            elif ch == "|" and inside:
                flush()
                return tuple(nodes), "|"
            else:
                text.append(ch)
                self.pos += 1
        flush()
        return tuple(nodes), None

    def variable(self) -> Var:
        start = self.pos
        end = self.source.find("}}", start + 2)
        if end < 0:
            raise self.fail("'{{' is not closed with '}}'", start)
        name = self.source[start + 2 : end].strip()
        if not NAME.match(name):
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise self.fail(
                f"'{{{{{shown}}}}}' is not a field name: use letters, digits and _, starting with a letter", start
            )
        self.pos = end + 2
        return Var(name)

    def group(self, depth: int) -> Spin:
        start = self.pos
        if depth > MAX_DEPTH:
            raise self.fail(f"Spintax nests deeper than {MAX_DEPTH} levels", start)
        self.pos += 1
        options: list[tuple[Node, ...]] = []
        while True:
            nodes, stop = self.sequence(depth, inside=True)
            options.append(nodes)
            if stop is None:
                raise self.fail("'{' is not closed with '}': write \\{ for a literal brace", start)
            self.pos += 1
            if stop == "}":
                break
        if len(options) < 2:
            inner = self.source[start + 1 : self.pos - 1]
            hint = f" For a variable write {{{{{inner.strip()}}}}}." if NAME.match(inner.strip()) else ""
            raise self.fail(
                f"'{{{inner}}}' has a single option: spintax picks one of several, as in {{Hi|Hello}}.{hint} "
                "Write \\{ and \\} for literal braces",
                start,
            )
        return Spin(tuple(options))


@dataclass(frozen=True)
class Template:
    """A parsed template; build it with :func:`parse`."""

    source: str
    nodes: tuple[Node, ...]

    @property
    def fields(self) -> frozenset[str]:
        """Every field name the template uses."""
        found: set[str] = set()
        _collect(self.nodes, found)
        return frozenset(found)

    def check_fields(self, available: Collection[str]) -> None:
        """Raise :class:`TemplateError` when the template uses a field that is
        neither built in (``phone``) nor in ``available``."""
        known = set(available) | BUILTIN_FIELDS
        unknown = sorted(self.fields - known)
        if unknown:
            names = ", ".join(f"{{{{{name}}}}}" for name in unknown)
            have = ", ".join(sorted(known))
            noun = "field" if len(unknown) == 1 else "fields"
            raise TemplateError(f"Unknown template {noun} {names}: the contact list has {have}.")

    def render(self, values: Mapping[str, object], rng: random.Random) -> str:
        """The text for one contact: variables from ``values`` (missing ones
        are empty), one option of each group drawn from ``rng``."""
        out: list[str] = []
        _render(self.nodes, values, rng, out)
        return "".join(out)

    def max_length(self, field_lengths: Mapping[str, int] | None = None) -> int:
        """The longest text the template can render, counting each field as
        ``field_lengths[name]`` characters (0 when absent)."""
        return _longest(self.nodes, field_lengths or {})


def parse(source: str) -> Template:
    """Parse ``source`` or raise :class:`TemplateError`."""
    if not isinstance(source, str):
        raise TemplateError("A template is text.")
    return Template(source, _Parser(source).parse())


def _collect(nodes: Sequence[Node], found: set[str]) -> None:
    for node in nodes:
        if isinstance(node, Var):
            found.add(node.name)
        elif isinstance(node, Spin):
            for option in node.options:
                _collect(option, found)


def _render(nodes: Sequence[Node], values: Mapping[str, object], rng: random.Random, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Var):
            value = values.get(node.name)
            out.append("" if value is None else str(value))
        else:
            _render(node.options[rng.randrange(len(node.options))], values, rng, out)


def _longest(nodes: Sequence[Node], field_lengths: Mapping[str, int]) -> int:
    total = 0
    for node in nodes:
        if isinstance(node, Text):
            total += len(node.value)
        elif isinstance(node, Var):
            total += field_lengths.get(node.name, 0)
        else:
            total += max(_longest(option, field_lengths) for option in node.options)
    return total
