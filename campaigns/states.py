"""The campaign lifecycle as a table, pure.

::

    draft --start--> scheduled --(start time, beat)--> running
    draft --start--> running                    (no start time, or it passed)
    running --pause--> paused --resume--> running
    running --(no instance connected, beat)--> paused --(one connects, beat)--> running
    running/paused --(every message final, beat)--> completed
    draft/scheduled/running/paused --cancel--> cancelled

``completed`` and ``cancelled`` are final. :func:`after` answers the status
an action leads to, or raises :class:`IllegalTransition` with a message that
says what is possible instead (the API answers it with 409).
"""

from __future__ import annotations

DRAFT, SCHEDULED, RUNNING, PAUSED, COMPLETED, CANCELLED = (
    "draft",
    "scheduled",
    "running",
    "paused",
    "completed",
    "cancelled",
)
FINAL = frozenset({COMPLETED, CANCELLED})

# The tenant's actions: action -> {status before: status after}. "start"
# from draft leads to scheduled or running depending on the start time.
ACTIONS: dict[str, dict[str, str]] = {
    "start": {DRAFT: RUNNING},
    "pause": {RUNNING: PAUSED},
    "resume": {PAUSED: RUNNING},
    "cancel": {DRAFT: CANCELLED, SCHEDULED: CANCELLED, RUNNING: CANCELLED, PAUSED: CANCELLED},
}
# What the beat job does by itself.
AUTOMATIC: dict[str, dict[str, str]] = {
    "begin": {SCHEDULED: RUNNING},
    "auto_pause": {RUNNING: PAUSED},
    "auto_resume": {PAUSED: RUNNING},
    "complete": {RUNNING: COMPLETED, PAUSED: COMPLETED},
}

_WHY = {
    ("start", SCHEDULED): "The campaign is already scheduled; it starts by itself at its start time.",
    ("start", RUNNING): "The campaign is already running.",
    ("start", PAUSED): "The campaign is paused: resume it instead.",
    ("pause", DRAFT): "The campaign has not started: there is nothing to pause.",
    ("pause", SCHEDULED): "The campaign has not started yet: cancel it, or let it start and pause it then.",
    ("pause", PAUSED): "The campaign is already paused.",
    ("resume", DRAFT): "The campaign has not started: start it instead.",
    ("resume", SCHEDULED): "The campaign is scheduled, not paused: it starts by itself at its start time.",
    ("resume", RUNNING): "The campaign is already running.",
}


class IllegalTransition(Exception):
    """The action does not apply in the campaign's status; ``str()`` says why."""


def after(status: str, action: str, *, scheduled: bool = False) -> str:
    """The status ``action`` leads to from ``status``. For ``start``,
    ``scheduled`` says the start time is still ahead (draft -> scheduled)."""
    table = ACTIONS.get(action) or AUTOMATIC.get(action)
    if table is None:
        raise IllegalTransition(f"Unknown action '{action}'.")
    if status in table:
        if action == "start" and scheduled:
            return SCHEDULED
        return table[status]
    if status in FINAL:
        raise IllegalTransition(f"The campaign is {status}: it cannot change any more.")
    raise IllegalTransition(_WHY.get((action, status), f"Cannot {action.replace('_', ' ')} a {status} campaign."))


def editable(status: str) -> bool:
    """Whether the campaign's settings (template, list, instances, times,
    pacing) may still change: only in draft, since everything after relies
    on what was checked at start. Its name may change at any time."""
    return status == DRAFT
