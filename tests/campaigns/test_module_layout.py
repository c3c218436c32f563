"""The campaigns app's modules import one way.

``campaigns.tasks`` is the Celery entry point: it imports the modules whose
work its tasks run, and none of them imports it back, not even inside a
function (they queue an expansion by name through ``campaigns.dispatch``).
Nothing in the app forms an import circle. Imports are read from the source
(``ast``), so an import deferred into a function body counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from campaigns import dispatch, tasks

APP = Path(__file__).resolve().parents[2] / "campaigns"


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_imports() -> dict[str, set[str]]:
    """Each module of the app (migrations aside) -> the app's modules it imports."""
    paths = {module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
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


def test_no_module_of_the_app_imports_the_celery_tasks() -> None:
    importers = sorted(name for name, targets in app_imports().items() if "campaigns.tasks" in targets)
    assert importers == []


def test_the_app_has_no_import_circle() -> None:
    assert cycles(app_imports()) == []


def test_the_lifecycle_and_the_beat_job_queue_the_expansion_by_its_registered_name() -> None:
    graph = app_imports()
    assert "campaigns.dispatch" in graph["campaigns.lifecycle"]
    assert "campaigns.dispatch" in graph["campaigns.jobs"]
    assert tasks.expand_campaign.name == dispatch.EXPAND_CAMPAIGN


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
