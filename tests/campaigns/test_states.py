"""The campaign lifecycle table: what each action leads to, and why not."""

from __future__ import annotations

import pytest

from campaigns import states
from campaigns.states import IllegalTransition, after


def test_start_runs_a_draft_or_schedules_it() -> None:
    assert after("draft", "start") == "running"
    assert after("draft", "start", scheduled=True) == "scheduled"


def test_pause_resume_and_cancel() -> None:
    assert after("running", "pause") == "paused"
    assert after("paused", "resume") == "running"
    for status in ("draft", "scheduled", "running", "paused"):
        assert after(status, "cancel") == "cancelled"


def test_the_beat_job_moves() -> None:
    assert after("scheduled", "begin") == "running"
    assert after("running", "auto_pause") == "paused"
    assert after("paused", "auto_resume") == "running"
    assert after("running", "complete") == after("paused", "complete") == "completed"


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        ("running", "start", "The campaign is already running."),
        ("scheduled", "start", "already scheduled"),
        ("paused", "start", "resume it instead"),
        ("draft", "pause", "has not started"),
        ("paused", "pause", "already paused"),
        ("running", "resume", "already running"),
        ("draft", "resume", "start it instead"),
        ("completed", "cancel", "The campaign is completed: it cannot change any more."),
        ("cancelled", "resume", "The campaign is cancelled: it cannot change any more."),
        ("draft", "complete", "Cannot complete a draft campaign."),
    ],
)
def test_illegal_moves_are_refused_with_what_to_do(status: str, action: str, message: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        after(status, action)
    assert message in str(caught.value)


def test_only_a_draft_is_editable() -> None:
    assert states.editable("draft")
    assert not any(states.editable(s) for s in ("scheduled", "running", "paused", "completed", "cancelled"))
