"""The campaigns app's modules import one way.

``campaigns.tasks`` is the Celery entry point: it imports the modules whose
work its tasks run, and none of them imports it back, not even inside a
function (they queue an expansion by name through ``campaigns.dispatch``).
Nothing in the app forms an import circle. Imports are read from the source
(``ast``), so an import deferred into a function body counts too.
"""

from __future__ import annotations

from blast import layers
from campaigns import dispatch, tasks


def app_imports() -> dict[str, set[str]]:
    """Each module of the app (migrations aside) -> the app's modules it imports."""
    return layers.graph_of(layers.project_modules(packages=("campaigns",)))


def test_no_module_of_the_app_imports_the_celery_tasks() -> None:
    importers = sorted(name for name, targets in app_imports().items() if "campaigns.tasks" in targets)
    assert importers == []


def test_the_app_has_no_import_circle() -> None:
    assert layers.cycles(app_imports()) == []


def test_the_lifecycle_and_the_beat_job_queue_the_expansion_by_its_registered_name() -> None:
    graph = app_imports()
    assert "campaigns.dispatch" in graph["campaigns.lifecycle"]
    assert "campaigns.dispatch" in graph["campaigns.jobs"]
    assert tasks.expand_campaign.name == dispatch.EXPAND_CAMPAIGN
