"""The project's layers, and the check that keeps imports running one way.

The apps stand on each other, lowest first (docs/ENGINE.md, README "Layout"):

    instances < monitoring < api < campaigns < engine

A module may import its own app and the apps below it, never one above: the
domain (instances: models, policies, leases, commands) knows nothing of the
messages sent through it, and only the engine, at the top, drives them all.
The simulator is a gateway, checked against the protocol and not against the
client: it imports none of the apps. ``blast`` is the project's wiring
(settings, URLs, ASGI, Celery) and its small shared utilities; it is outside
the ladder. Across the whole project no import circle is allowed.

Imports are read from the source (``ast``), so one deferred into a function
body counts too; those under ``if TYPE_CHECKING:`` never run and do not.
Run it as ``.venv/bin/python -m blast.layers`` (``make lint`` does); it
prints every upward import and every circle, and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS: tuple[str, ...] = ("instances", "monitoring", "api", "campaigns", "engine")
# Packages that import no app at all.
STANDALONE: tuple[str, ...] = ("simulator",)
PACKAGES: tuple[str, ...] = (*LAYERS, *STANDALONE, "blast")


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it was written."""

    module: str  # the importing module
    target: str  # the imported module (or module.name for ``from m import name``)
    path: Path
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the project's packages, migrations aside."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.parts:
                found[module_name(path, root)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (never run)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(name: str, path: Path) -> list[Import]:
    """Every absolute import in one module that runs, function bodies
    included; those under ``if TYPE_CHECKING:`` only name types and never
    run, so they are left out."""
    found: list[Import] = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, path, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(Import(name, node.module, path, node.lineno))
            found.extend(Import(name, f"{node.module}.{alias.name}", path, node.lineno) for alias in node.names)
    return found


def upward(imports: list[Import]) -> list[Import]:
    """Imports from a lower app into a higher one, or from a standalone
    package into any app."""
    rank = {app: i for i, app in enumerate(LAYERS)}
    wrong: list[Import] = []
    for found in imports:
        source, target = found.module.split(".")[0], found.target.split(".")[0]
        if target not in rank or source == target:
            continue
        if source in STANDALONE or (source in rank and rank[target] > rank[source]):
            wrong.append(found)
    # ``from a import b`` is recorded twice (a, a.b): report each line once.
    unique = {(f.path, f.line, f.target.split(".")[0]): f for f in wrong}
    return list(unique.values())


def graph_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module -> the project modules it imports."""
    return {
        name: {i.target for i in imports_of(name, path) if i.target in modules and i.target != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(root: Path = ROOT) -> int:
    modules = project_modules(root)
    wrong = upward([i for name, path in modules.items() for i in imports_of(name, path)])
    circles = cycles(graph_of(modules))
    for found in sorted(wrong, key=lambda f: (str(f.path), f.line)):
        print(f"{found.path.relative_to(root)}:{found.line}: {found.module} imports {found.target} (a higher layer)")
    for circle in circles:
        print("import circle: " + " -> ".join(circle))
    if wrong or circles:
        return 1
    print(f"layers: {len(modules)} modules, {' < '.join(LAYERS)}; no upward import, no import circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
