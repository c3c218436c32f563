"""The circuit breaker, fed events and read out, as python-websockets tests its protocol.

Times are epoch seconds passed in; nothing here reads a clock. About 500
lines: one test per rule at each of its boundaries, read as the breaker's
specification.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import override_settings

from instances.breaker import (
    Breaker,
    BreakerPolicy,
    State,
    Transition,
    allows_attempt,
    counts_as_failure,
    failures_in_window,
    poll,
    record_failure,
    record_success,
    reset,
    trial_survived,
)
from instances.decisions import Outcome, Policies, SessionEnd, after_ready, after_session
from instances.reasons import KINDS, Kind, Reason

POLICY = BreakerPolicy()
T0 = 1_700_000_000.0


def fail_at(b: Breaker, *times: float, policy: BreakerPolicy = POLICY) -> tuple[Breaker, Transition | None]:
    """Record failures at each of ``times`` in turn; return the last result."""
    transition: Transition | None = None
    for t in times:
        b, transition = record_failure(b, t, policy)
    return b, transition


def tripped(at: float = T0) -> Breaker:
    """A breaker opened by ten failures, one a second, the last at ``at``."""
    b, transition = fail_at(Breaker(), *(at - 9 + i for i in range(10)))
    assert transition is Transition.OPENED
    return b


# --- Closed ------------------------------------------------------------------------


def test_a_new_breaker_is_closed_and_allows_attempts() -> None:
    b = Breaker()
    assert b.state is State.CLOSED
    assert b.failures == ()
    assert b.trip_count == 0
    assert allows_attempt(b, T0)


def test_nine_failures_in_five_minutes_keep_it_closed() -> None:
    b, transition = fail_at(Breaker(), *(T0 + 30 * i for i in range(9)))
    assert b.state is State.CLOSED
    assert transition is None
    assert failures_in_window(b, T0 + 240, POLICY) == 9
    assert allows_attempt(b, T0 + 240)


def test_it_opens_after_ten_failures_in_five_minutes() -> None:
    b, _ = fail_at(Breaker(), *(T0 + 30 * i for i in range(9)))
    now = T0 + 270
    b, transition = record_failure(b, now, POLICY)
    assert transition is Transition.OPENED
    assert b.state is State.OPEN
    assert b.opened_at == now
    assert b.cooldown_until == now + 600
    assert b.trip_count == 1
    assert b.failures == tuple(T0 + 30 * i for i in range(10))  # kept, not cleared


def test_ten_failures_at_the_same_instant_open_it() -> None:
    b, transition = fail_at(Breaker(), *([T0] * 10))
    assert transition is Transition.OPENED
    assert b.failures == (T0,) * 10


def test_a_failure_exactly_five_minutes_old_still_counts() -> None:
    b, _ = fail_at(Breaker(), T0, *(T0 + 100 + i for i in range(8)))
    b, transition = record_failure(b, T0 + 300, POLICY)
    assert transition is Transition.OPENED


def test_a_failure_five_minutes_and_one_second_old_no_longer_counts() -> None:
    b, _ = fail_at(Breaker(), T0, *(T0 + 100 + i for i in range(8)))
    b, transition = record_failure(b, T0 + 301, POLICY)
    assert transition is None
    assert b.state is State.CLOSED
    assert failures_in_window(b, T0 + 301, POLICY) == 9
    assert T0 not in b.failures  # pruned from what the row stores


def test_failures_in_window_ages_with_time() -> None:
    b, _ = fail_at(Breaker(), T0, T0 + 10, T0 + 20)
    assert failures_in_window(b, T0 + 20, POLICY) == 3
    assert failures_in_window(b, T0 + 300, POLICY) == 3
    assert failures_in_window(b, T0 + 300.5, POLICY) == 2
    assert failures_in_window(b, T0 + 320, POLICY) == 1
    assert failures_in_window(b, T0 + 320.001, POLICY) == 0


def test_failures_spaced_wider_than_the_window_allows_never_open_it() -> None:
    # One failure every 34 s: at most nine fit in five minutes.
    b = Breaker()
    for i in range(500):
        b, transition = record_failure(b, T0 + 34 * i, POLICY)
        assert transition is None
        assert len(b.failures) <= 9
    assert b.state is State.CLOSED


def test_failures_spaced_thirty_three_seconds_apart_open_it() -> None:
    # 9 * 33 = 297 s: ten fit in the window.
    _, transition = fail_at(Breaker(), *(T0 + 33 * i for i in range(10)))
    assert transition is Transition.OPENED


def test_a_success_while_closed_does_not_clear_the_window() -> None:
    b, _ = fail_at(Breaker(), *(T0 + i for i in range(9)))
    b, transition = record_success(b, T0 + 10, POLICY)
    assert transition is None
    assert b.state is State.CLOSED
    assert failures_in_window(b, T0 + 10, POLICY) == 9


def test_a_flapping_session_cannot_escape_by_succeeding_between_failures() -> None:
    b = Breaker()
    transitions = []
    for i in range(10):
        b, _ = record_success(b, T0 + 20 * i, POLICY)
        b, transition = record_failure(b, T0 + 20 * i + 5, POLICY)
        transitions.append(transition)
    assert transitions == [None] * 9 + [Transition.OPENED]
    assert b.state is State.OPEN


def test_a_success_while_closed_drops_failures_that_aged_out() -> None:
    b, _ = fail_at(Breaker(), T0, T0 + 200)
    b, _ = record_success(b, T0 + 400, POLICY)
    assert b.failures == (T0 + 200,)


def test_poll_leaves_a_closed_breaker_alone() -> None:
    b, _ = fail_at(Breaker(), T0)
    assert poll(b, T0 + 10_000, POLICY) == (b, None)


# --- Open ----------------------------------------------------------------------------


def test_an_open_breaker_refuses_attempts_until_the_cooldown_ends() -> None:
    b = tripped(T0)
    assert not allows_attempt(b, T0)
    assert not allows_attempt(b, T0 + 599.999)
    assert allows_attempt(b, T0 + 600)


def test_poll_before_the_cooldown_ends_changes_nothing() -> None:
    b = tripped(T0)
    assert poll(b, T0 + 599.999, POLICY) == (b, None)


def test_it_goes_half_open_when_the_cooldown_ends() -> None:
    b = tripped(T0)
    half, transition = poll(b, T0 + 600, POLICY)
    assert transition is Transition.HALF_OPENED
    assert half.state is State.HALF_OPEN
    assert half.trip_count == 1
    assert half.opened_at == T0


def test_polling_long_after_the_cooldown_goes_half_open_once() -> None:
    b = tripped(T0)
    half, transition = poll(b, T0 + 86_400, POLICY)
    assert transition is Transition.HALF_OPENED
    assert poll(half, T0 + 86_401, POLICY) == (half, None)


def test_a_forced_retry_that_fails_keeps_it_open_and_restarts_the_cooldown() -> None:
    b = tripped(T0)
    again, transition = record_failure(b, T0 + 100, POLICY)
    assert transition is None
    assert again.state is State.OPEN
    assert again.cooldown_until == T0 + 700
    assert again.opened_at == T0
    assert again.trip_count == 1
    assert not allows_attempt(again, T0 + 650)


def test_a_forced_retry_that_works_closes_it_with_the_window_cleared() -> None:
    b = tripped(T0)
    closed, transition = record_success(b, T0 + 100, POLICY)
    assert transition is Transition.CLOSED
    assert closed == Breaker(trip_count=1)


# --- The trial: ready for the flap window, not ready alone ----------------------------


def test_ready_alone_does_not_close_a_half_open_breaker() -> None:
    half, _ = poll(tripped(T0), T0 + 600, POLICY)
    assert after_ready(half, now=T0 + 601, policies=Policies()) == (half, None)


def test_a_trial_closes_once_its_session_has_been_ready_for_the_flap_window() -> None:
    half, _ = poll(tripped(T0), T0 + 600, POLICY)
    assert trial_survived(half, T0 + 601, T0 + 630.9, POLICY) == (half, None)
    closed, transition = trial_survived(half, T0 + 601, T0 + 631, POLICY)
    assert transition is Transition.CLOSED
    assert closed == Breaker(trip_count=1)
    # A closed breaker, or a session never ready, is left alone.
    assert trial_survived(closed, T0 + 601, T0 + 700, POLICY) == (closed, None)
    assert trial_survived(half, None, T0 + 700, POLICY) == (half, None)


def _trial_ended(ended_at: float) -> Outcome:
    """The outcome of a half-open trial ready at T0 + 601 that ended at ``ended_at``."""
    half, _ = poll(tripped(T0), T0 + 600, POLICY)
    return after_session(
        SessionEnd(Reason.TIMED_OUT, ready_at=T0 + 601),
        retry_count=0,
        breaker=half,
        desired_running=True,
        recent_restarts=0,
        now=ended_at,
        policies=Policies(),
    )


def test_a_trial_that_drops_inside_the_flap_window_opens_it_again() -> None:
    outcome = _trial_ended(T0 + 610)
    assert outcome.failure and outcome.transition is Transition.OPENED
    assert (outcome.breaker.state, outcome.breaker.trip_count) == (State.OPEN, 2)
    assert outcome.next_retry_at == T0 + 610 + POLICY.cooldown_s


def test_a_trial_that_ends_after_the_flap_window_has_succeeded() -> None:
    """The session ended before the worker's own check closed the breaker."""
    outcome = _trial_ended(T0 + 640)
    assert not outcome.failure and outcome.transition is Transition.CLOSED
    assert outcome.breaker.state is State.CLOSED


def test_an_open_breaker_keeps_at_most_threshold_failures() -> None:
    b = tripped(T0)
    for i in range(1, 50):
        b, _ = record_failure(b, T0 + i, POLICY)
    assert len(b.failures) == 10
    assert b.failures == tuple(T0 + i for i in range(40, 50))


def test_an_open_row_without_a_cooldown_recovers_instead_of_staying_shut() -> None:
    damaged = Breaker(state=State.OPEN, opened_at=T0)
    assert allows_attempt(damaged, T0)
    half, transition = poll(damaged, T0, POLICY)
    assert transition is Transition.HALF_OPENED
    assert half.state is State.HALF_OPEN


# --- Half-open -----------------------------------------------------------------------


def half_open(at: float = T0) -> Breaker:
    b, transition = poll(tripped(at), at + 600, POLICY)
    assert transition is Transition.HALF_OPENED
    return b


def test_a_half_open_breaker_allows_its_trial() -> None:
    assert allows_attempt(half_open(T0), T0 + 600)


def test_the_trial_failing_opens_it_again_with_a_new_cooldown() -> None:
    b = half_open(T0)
    now = T0 + 605
    again, transition = record_failure(b, now, POLICY)
    assert transition is Transition.OPENED
    assert again.state is State.OPEN
    assert again.opened_at == now
    assert again.cooldown_until == now + 600
    assert again.trip_count == 2
    assert not allows_attempt(again, now + 599)
    assert allows_attempt(again, now + 600)


def test_the_trial_failing_opens_it_even_with_the_window_empty() -> None:
    # Ten minutes of cooldown aged every earlier failure out of the window.
    b = half_open(T0)
    assert failures_in_window(b, T0 + 1000, POLICY) == 0
    again, transition = record_failure(b, T0 + 1000, POLICY)
    assert transition is Transition.OPENED
    assert again.failures == (T0 + 1000,)


def test_the_trial_succeeding_closes_it_with_the_window_cleared() -> None:
    b = half_open(T0)
    closed, transition = record_success(b, T0 + 605, POLICY)
    assert transition is Transition.CLOSED
    assert closed.state is State.CLOSED
    assert closed.failures == ()
    assert closed.opened_at is None
    assert closed.cooldown_until is None
    assert closed.trip_count == 1


def test_after_closing_it_takes_ten_fresh_failures_to_open_again() -> None:
    closed, _ = record_success(half_open(T0), T0 + 605, POLICY)
    b, transition = fail_at(closed, *(T0 + 610 + i for i in range(9)))
    assert transition is None
    b, transition = record_failure(b, T0 + 620, POLICY)
    assert transition is Transition.OPENED
    assert b.trip_count == 2


def test_poll_leaves_a_half_open_breaker_alone() -> None:
    b = half_open(T0)
    assert poll(b, T0 + 10_000, POLICY) == (b, None)


# --- Reset ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tripped, half_open], ids=["open", "half_open"])
def test_reset_closes_it_with_the_window_cleared_and_keeps_the_trip_count(
    make: Callable[[float], Breaker],
) -> None:
    b = make(T0)
    closed, transition = reset(b)
    assert transition is Transition.CLOSED
    assert closed == Breaker(trip_count=1)
    assert allows_attempt(closed, T0)


def test_reset_of_a_closed_breaker_clears_the_window_without_a_transition() -> None:
    b, _ = fail_at(Breaker(trip_count=4), *(T0 + i for i in range(9)))
    closed, transition = reset(b)
    assert transition is None
    assert closed == Breaker(trip_count=4)


# --- What counts as a failure ----------------------------------------------------------


COUNTED = [reason for reason, kind in KINDS.items() if kind in (Kind.TRANSIENT, Kind.REPAIR, Kind.LONG_PAUSE)]
NEVER_COUNTED = [reason for reason, kind in KINDS.items() if kind in (Kind.RESTART, Kind.CLEAN, Kind.TERMINAL)]


@pytest.mark.parametrize("reason", COUNTED)
def test_a_session_that_never_reached_ready_counts(reason: Reason) -> None:
    assert counts_as_failure(reason, None, T0, POLICY)


@pytest.mark.parametrize("reason", COUNTED)
def test_a_drop_within_thirty_seconds_of_ready_counts(reason: Reason) -> None:
    assert counts_as_failure(reason, T0, T0, POLICY)
    assert counts_as_failure(reason, T0, T0 + 29.999, POLICY)


@pytest.mark.parametrize("reason", COUNTED)
def test_a_drop_exactly_thirty_seconds_after_ready_does_not_count(reason: Reason) -> None:
    assert not counts_as_failure(reason, T0, T0 + 30, POLICY)
    assert not counts_as_failure(reason, T0, T0 + 3600, POLICY)


@pytest.mark.parametrize("reason", NEVER_COUNTED)
def test_restart_clean_and_terminal_reasons_never_count(reason: Reason) -> None:
    assert not counts_as_failure(reason, None, T0, POLICY)
    assert not counts_as_failure(reason, T0, T0 + 1, POLICY)


def test_restart_required_is_not_a_failure() -> None:
    assert not counts_as_failure(Reason.RESTART_REQUIRED, None, T0, POLICY)


# --- Other policies ------------------------------------------------------------------


def test_a_threshold_of_one_opens_on_the_first_failure() -> None:
    policy = BreakerPolicy(threshold=1)
    b, transition = record_failure(Breaker(), T0, policy)
    assert transition is Transition.OPENED
    assert b.failures == (T0,)


def test_a_zero_cooldown_goes_half_open_at_once() -> None:
    policy = BreakerPolicy(threshold=1, cooldown_s=0)
    b, _ = record_failure(Breaker(), T0, policy)
    assert allows_attempt(b, T0)
    assert poll(b, T0, policy)[1] is Transition.HALF_OPENED


def test_a_zero_window_counts_only_simultaneous_failures() -> None:
    policy = BreakerPolicy(threshold=2, window_s=0)
    b, transition = fail_at(Breaker(), T0, T0 + 0.001, policy=policy)
    assert transition is None
    b, transition = record_failure(b, T0 + 0.001, policy)
    assert transition is Transition.OPENED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"threshold": -1},
        {"window_s": -1.0},
        {"cooldown_s": -0.001},
        {"flap_window_s": -1.0},
        {"window_s": math.nan},
    ],
)
def test_invalid_policy_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_defaults_are_the_seeds() -> None:
    assert POLICY == BreakerPolicy(threshold=10, window_s=300.0, cooldown_s=600.0, flap_window_s=30.0)


def test_from_settings_follows_the_configured_settings() -> None:
    policy = BreakerPolicy.from_settings()
    assert policy.threshold == settings.BLAST_BREAKER_THRESHOLD
    assert policy.window_s == settings.BLAST_BREAKER_WINDOW_S


@override_settings(
    BLAST_BREAKER_THRESHOLD=3,
    BLAST_BREAKER_WINDOW_S=60.0,
    BLAST_BREAKER_COOLDOWN_S=120.0,
    BLAST_FLAP_WINDOW_S=5.0,
)
def test_from_settings_reads_every_setting() -> None:
    assert BreakerPolicy.from_settings() == BreakerPolicy(
        threshold=3, window_s=60.0, cooldown_s=120.0, flap_window_s=5.0
    )


# --- The value itself ----------------------------------------------------------------


def test_states_match_the_model_choices() -> None:
    from instances.models import BreakerState

    assert {s.value for s in State} == {c.value for c in BreakerState}


def test_a_row_loaded_from_the_database_is_normalised() -> None:
    b = Breaker(state="open", failures=[T0 + 2, T0, T0 + 1], cooldown_until=T0 + 600)  # type: ignore[arg-type]
    assert b.state is State.OPEN
    assert b.failures == (T0, T0 + 1, T0 + 2)


def test_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError):
        Breaker(state="ajar")  # type: ignore[arg-type]


def test_events_return_new_breakers_and_leave_the_old_one_untouched() -> None:
    b, _ = fail_at(Breaker(), *(T0 + i for i in range(9)))
    before = Breaker(b.state, b.failures, b.opened_at, b.cooldown_until, b.trip_count)
    record_failure(b, T0 + 9, POLICY)
    record_success(b, T0 + 9, POLICY)
    reset(b)
    assert b == before
    with pytest.raises(AttributeError):
        b.state = State.OPEN  # type: ignore[misc]


# --- Invariants over random event sequences -----------------------------------------------


def test_invariants_hold_over_a_thousand_random_event_sequences() -> None:
    rng = random.Random(20_240_601)
    steps = [0.0, 0.5, 1.0, 5.0, 29.0, 30.0, 33.0, 299.0, 300.0, 301.0, 599.0, 600.0, 601.0, 3600.0]
    policies = [
        POLICY,
        BreakerPolicy(threshold=1),
        BreakerPolicy(threshold=3, window_s=60.0, cooldown_s=120.0),
        BreakerPolicy(threshold=5, window_s=0.0, cooldown_s=0.0),
    ]
    seen: dict[tuple[State, Transition | None], int] = {}
    for _ in range(1_000):
        policy = rng.choice(policies)
        b = Breaker()
        now = T0
        # Every failure since the window was last cleared: the reference model.
        history: list[float] = []
        for _ in range(rng.randint(1, 80)):
            now += rng.choice(steps)
            event = rng.choices(["failure", "success", "poll", "reset"], weights=[10, 3, 4, 1])[0]
            before = b
            if event == "failure":
                history.append(now)
                b, transition = record_failure(b, now, policy)
            elif event == "success":
                b, transition = record_success(b, now, policy)
            elif event == "poll":
                b, transition = poll(b, now, policy)
            else:
                b, transition = reset(b)
            if event == "reset" or (b.state is State.CLOSED and before.state is not State.CLOSED):
                history = []

            assert b.state in (State.CLOSED, State.OPEN, State.HALF_OPEN)
            assert len(b.failures) <= policy.threshold
            assert list(b.failures) == sorted(b.failures)
            # A transition is reported exactly when the state changes.
            assert (transition is None) == (b.state is before.state)
            if transition is Transition.OPENED:
                assert b.state is State.OPEN
                assert b.trip_count == before.trip_count + 1
            else:
                assert b.trip_count == before.trip_count
            if transition is Transition.HALF_OPENED:
                assert before.state is State.OPEN
                assert b.state is State.HALF_OPEN
            if transition is Transition.CLOSED:
                assert b.state is State.CLOSED
                assert b.failures == ()
            if b.state is State.OPEN:
                assert b.cooldown_until is not None
                assert b.opened_at is not None
                if event == "failure":
                    assert b.cooldown_until == now + policy.cooldown_s
                if now < b.cooldown_until:
                    assert not allows_attempt(b, now)
                    assert not allows_attempt(b, math.nextafter(b.cooldown_until, 0.0))
                assert allows_attempt(b, b.cooldown_until)
            else:
                assert allows_attempt(b, now)
            if b.state is State.CLOSED:
                assert b.cooldown_until is None
                # A closed breaker never holds a full window.
                assert failures_in_window(b, now, policy) < policy.threshold
            # The stored window is the newest failures of the reference model.
            in_window = sum(1 for t in history if now - t <= policy.window_s)
            assert failures_in_window(b, now, policy) == min(in_window, policy.threshold)
            seen[(b.state, transition)] = seen.get((b.state, transition), 0) + 1
    # The sequences reach every state through every transition, many times.
    for key in [
        (State.OPEN, Transition.OPENED),
        (State.OPEN, None),
        (State.HALF_OPEN, Transition.HALF_OPENED),
        (State.CLOSED, Transition.CLOSED),
    ]:
        assert seen.get(key, 0) > 100, key
