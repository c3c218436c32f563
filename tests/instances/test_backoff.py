"""The retry policy: delays by reason, growth, cap, jitter, floors.

``rand`` is pinned to show exact values: 0.5 is the centre of the jitter
range, 0.0 its lower bound and ``JUST_UNDER_ONE`` (the largest value
``random.random`` can return) its upper bound.
"""

from __future__ import annotations

import functools
import math
import random
import statistics

import pytest
from django.conf import settings
from django.test import override_settings

from instances.backoff import RetryPolicy, nominal_delay, restarts_in_window, retry_delay
from instances.reasons import KINDS, Kind, Reason

POLICY = RetryPolicy()
JUST_UNDER_ONE = math.nextafter(1.0, 0.0)

TRANSIENT = [reason for reason, kind in KINDS.items() if kind is Kind.TRANSIENT]
TRANSIENT_NOT_TIMEOUT = [reason for reason in TRANSIENT if reason is not Reason.TIMED_OUT]


def delay(reason: Reason, failures: int, rand: float = 0.5, **kwargs: float | int | None) -> float | None:
    return retry_delay(reason, failures, POLICY, rand=lambda: rand, **kwargs)  # type: ignore[arg-type]


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


# --- Base delays by reason ---------------------------------------------------------


@pytest.mark.parametrize("reason", TRANSIENT_NOT_TIMEOUT)
def test_a_transient_reason_waits_fifteen_seconds(reason: Reason) -> None:
    assert delay(reason, 1) == approx(15.0)


def test_timed_out_waits_thirty_seconds() -> None:
    assert delay(Reason.TIMED_OUT, 1) == approx(30.0)


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5])
def test_the_first_five_failures_stay_at_the_base(failures: int) -> None:
    assert delay(Reason.CONNECTION_LOST, failures) == approx(15.0)
    assert delay(Reason.TIMED_OUT, failures) == approx(30.0)


def test_the_sixth_failure_grows_by_the_factor() -> None:
    assert delay(Reason.CONNECTION_LOST, 6) == approx(22.5)
    assert delay(Reason.TIMED_OUT, 6) == approx(45.0)


def test_growth_compounds_with_each_further_failure() -> None:
    assert delay(Reason.CONNECTION_LOST, 7) == approx(33.75)
    assert nominal_delay(Reason.CONNECTION_LOST, 8, POLICY) == approx(50.625)


def test_near_the_cap_the_jitter_range_is_clipped_so_its_centre_moves_down() -> None:
    # 50.625 +/- 20% is [40.5, 60.75]; clipped to [40.5, 60], whose middle is 50.25.
    assert delay(Reason.CONNECTION_LOST, 8) == approx(50.25)


@pytest.mark.parametrize("failures", [9, 10, 50, 1_000, 10_000, 10**9])
def test_the_nominal_delay_is_capped_at_sixty_seconds(failures: int) -> None:
    # 1.5 ** 10_000 overflows a float: the cap must hold without OverflowError.
    assert nominal_delay(Reason.CONNECTION_LOST, failures, POLICY) == 60.0
    assert nominal_delay(Reason.TIMED_OUT, failures, POLICY) == 60.0
    assert delay(Reason.CONNECTION_LOST, failures, rand=0.0) == approx(48.0)
    assert delay(Reason.CONNECTION_LOST, failures, rand=JUST_UNDER_ONE) == pytest.approx(60.0)
    assert delay(Reason.CONNECTION_LOST, failures, rand=1.0) == 60.0


def test_timed_out_reaches_the_cap_sooner() -> None:
    assert nominal_delay(Reason.TIMED_OUT, 7, POLICY) == 60.0  # 30 * 1.5**2 = 67.5 -> 60
    assert nominal_delay(Reason.CONNECTION_LOST, 7, POLICY) == approx(33.75)


def test_a_base_above_the_cap_is_held_to_the_cap() -> None:
    policy = RetryPolicy(timeout_delay_s=90.0, max_delay_s=60.0)
    assert nominal_delay(Reason.TIMED_OUT, 1, policy) == 60.0
    assert retry_delay(Reason.TIMED_OUT, 1, policy, rand=lambda: 1.0) == 60.0
    assert retry_delay(Reason.TIMED_OUT, 1, policy, rand=lambda: 0.0) == approx(48.0)


def test_a_zero_base_delay_stays_zero_at_any_failure_count() -> None:
    policy = RetryPolicy(delay_s=0.0)
    assert retry_delay(Reason.CONNECTION_LOST, 10_000, policy, rand=lambda: 0.5) == 0.0


def test_a_growth_factor_of_one_never_grows() -> None:
    policy = RetryPolicy(growth_factor=1.0)
    assert nominal_delay(Reason.CONNECTION_LOST, 10_000, policy) == 15.0


def test_growth_after_zero_grows_from_the_first_failure() -> None:
    policy = RetryPolicy(growth_after=0)
    assert nominal_delay(Reason.CONNECTION_LOST, 1, policy) == approx(22.5)


def test_failures_below_one_count_as_the_first() -> None:
    assert delay(Reason.CONNECTION_LOST, 0) == delay(Reason.CONNECTION_LOST, 1)
    assert delay(Reason.CONNECTION_LOST, -3) == delay(Reason.CONNECTION_LOST, 1)


# --- Jitter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [
        (1, 12.0, 18.0),  # 15 +/- 20%
        (6, 18.0, 27.0),  # 22.5 +/- 20%
        (8, 40.5, 60.0),  # 50.625 -> [40.5, 60.75] clipped at the cap
        (9, 48.0, 60.0),  # nominal capped at 60: spread below it only
    ],
)
def test_the_jitter_bounds(failures: int, low: float, high: float) -> None:
    assert delay(Reason.CONNECTION_LOST, failures, rand=0.0) == approx(low)
    high_draw = delay(Reason.CONNECTION_LOST, failures, rand=JUST_UNDER_ONE)
    assert high_draw is not None
    assert high_draw <= high
    assert high_draw == pytest.approx(high)


def test_a_random_source_outside_zero_one_is_clamped() -> None:
    assert delay(Reason.CONNECTION_LOST, 1, rand=-5.0) == approx(12.0)
    assert delay(Reason.CONNECTION_LOST, 1, rand=7.0) == approx(18.0)
    assert delay(Reason.CONNECTION_LOST, 1, rand=math.nan) == approx(12.0)


def test_zero_jitter_returns_the_nominal_delay() -> None:
    policy = RetryPolicy(jitter=0.0)
    for draw in (0.0, 0.5, JUST_UNDER_ONE):
        assert retry_delay(Reason.CONNECTION_LOST, 1, policy, rand=functools.partial(float, draw)) == 15.0


@pytest.mark.parametrize(
    ("reason", "failures", "low", "high"),
    [
        (Reason.CONNECTION_LOST, 1, 12.0, 18.0),
        (Reason.TIMED_OUT, 1, 24.0, 36.0),
        (Reason.CONNECTION_LOST, 8, 40.5, 60.0),
        (Reason.CONNECTION_LOST, 10_000, 48.0, 60.0),
    ],
)
def test_ten_thousand_draws_stay_within_bounds_and_spread(
    reason: Reason, failures: int, low: float, high: float
) -> None:
    rand = random.Random(20240601).random
    draws = [retry_delay(reason, failures, POLICY, rand=rand) for _ in range(10_000)]
    values = [d for d in draws if d is not None]
    assert len(values) == 10_000
    assert all(low - 1e-9 <= d <= high + 1e-9 for d in values)
    assert max(values) <= POLICY.max_delay_s
    # Spread, not collapsed onto one value (notably not onto the cap).
    assert statistics.stdev(values) > (high - low) / 5
    assert min(values) < low + (high - low) * 0.01
    assert max(values) > high - (high - low) * 0.01
    assert sum(1 for d in values if d == high) < 10


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [delay(Reason.CONNECTION_LOST, n, rand=random.Random(7).random()) for n in range(1, 20)]
    second = [delay(Reason.CONNECTION_LOST, n, rand=random.Random(7).random()) for n in range(1, 20)]
    assert first == second


def test_the_default_random_source_is_used_when_none_is_given() -> None:
    value = retry_delay(Reason.CONNECTION_LOST, 1, POLICY)
    assert value is not None
    assert 12.0 <= value <= 18.0


# --- Retry-After ---------------------------------------------------------------------


def test_retry_after_is_a_floor() -> None:
    assert delay(Reason.RATE_LIMITED, 1, retry_after=40.0) == 40.0


def test_retry_after_below_the_delay_changes_nothing() -> None:
    assert delay(Reason.RATE_LIMITED, 1, retry_after=7.0) == approx(15.0)


def test_retry_after_may_exceed_the_cap() -> None:
    assert delay(Reason.UNAVAILABLE, 10_000, rand=JUST_UNDER_ONE, retry_after=120.0) == 120.0


def test_retry_after_applies_after_jitter() -> None:
    # The floor is not jittered below itself.
    assert delay(Reason.RATE_LIMITED, 1, rand=0.0, retry_after=17.0) == 17.0


def test_retry_after_floors_an_immediate_restart_too() -> None:
    assert delay(Reason.RESTART_REQUIRED, 1, retry_after=5.0) == 5.0


def test_retry_after_does_not_revive_a_terminal_reason() -> None:
    assert delay(Reason.UNAUTHORIZED, 1, retry_after=30.0) is None


# --- Restart required --------------------------------------------------------------


@pytest.mark.parametrize("recent", [0, 1, 2])
def test_restart_required_reconnects_at_once_within_the_burst(recent: int) -> None:
    assert delay(Reason.RESTART_REQUIRED, 1, recent_restarts=recent) == 0.0


@pytest.mark.parametrize("recent", [3, 4, 100])
def test_restart_required_in_a_loop_is_delayed_like_a_transient_reason(recent: int) -> None:
    assert delay(Reason.RESTART_REQUIRED, 1, recent_restarts=recent) == approx(15.0)
    assert delay(Reason.RESTART_REQUIRED, 1, rand=0.0, recent_restarts=recent) == approx(12.0)


def test_a_looping_restart_grows_with_failures() -> None:
    assert delay(Reason.RESTART_REQUIRED, 6, recent_restarts=3) == approx(22.5)


def test_a_zero_restart_burst_never_restarts_at_once() -> None:
    policy = RetryPolicy(restart_burst=0)
    assert retry_delay(Reason.RESTART_REQUIRED, 1, policy, rand=lambda: 0.5) == approx(15.0)


def test_restarts_in_window_counts_the_last_minute() -> None:
    now = 1_000_000.0
    times = [now - 61.0, now - 60.0, now - 30.0, now]
    assert restarts_in_window(times, now, POLICY) == 3
    assert restarts_in_window([], now, POLICY) == 0


# --- Bad session (re-pair) ------------------------------------------------------------


def test_bad_session_reconnects_at_once_the_first_time() -> None:
    assert delay(Reason.BAD_SESSION, 1) == 0.0


def test_a_repeated_bad_session_is_delayed_like_a_transient_reason() -> None:
    assert delay(Reason.BAD_SESSION, 2) == approx(15.0)
    assert delay(Reason.BAD_SESSION, 6) == approx(22.5)


# --- Temporarily banned ----------------------------------------------------------------


def test_a_ban_pauses_one_hour_at_least() -> None:
    assert delay(Reason.TEMPORARILY_BANNED, 1, rand=0.0) == 3600.0


def test_the_ban_pause_is_jittered_upward_only() -> None:
    assert delay(Reason.TEMPORARILY_BANNED, 1, rand=0.5) == approx(3960.0)
    high = delay(Reason.TEMPORARILY_BANNED, 1, rand=JUST_UNDER_ONE)
    assert high is not None
    assert 3600.0 < high <= 4320.0
    assert high == pytest.approx(4320.0)


def test_the_ban_pause_ignores_the_cap_and_the_failure_count() -> None:
    for failures in (1, 6, 10_000):
        assert delay(Reason.TEMPORARILY_BANNED, failures, rand=0.0) == 3600.0


def test_ten_thousand_ban_pauses_stay_within_bounds() -> None:
    rand = random.Random(4402).random
    values = [retry_delay(Reason.TEMPORARILY_BANNED, 1, POLICY, rand=rand) for _ in range(10_000)]
    assert all(v is not None and 3600.0 <= v <= 4320.0 for v in values)
    assert statistics.stdev(v for v in values if v is not None) > 100.0


# --- Terminal and clean reasons ---------------------------------------------------------


@pytest.mark.parametrize("reason", [reason for reason, kind in KINDS.items() if kind in (Kind.TERMINAL, Kind.CLEAN)])
def test_terminal_and_clean_reasons_schedule_nothing(reason: Reason) -> None:
    for failures in (1, 6, 10_000):
        assert delay(reason, failures) is None


def test_every_reason_has_a_decision() -> None:
    for reason in Reason:
        value = delay(reason, 1)
        assert value is None or value >= 0.0


# --- The policy object -------------------------------------------------------------------


def test_the_defaults_are_the_seeds() -> None:
    assert POLICY == RetryPolicy(
        timeout_delay_s=30.0,
        delay_s=15.0,
        growth_after=5,
        growth_factor=1.5,
        max_delay_s=60.0,
        jitter=0.2,
        ban_pause_s=3600.0,
        restart_burst=3,
        restart_window_s=60.0,
    )


def test_from_settings_follows_the_configured_settings() -> None:
    policy = RetryPolicy.from_settings()
    assert policy.delay_s == settings.BLAST_RETRY_DELAY_S
    assert policy.max_delay_s == settings.BLAST_RETRY_MAX_DELAY_S
    assert policy.restart_burst == RetryPolicy().restart_burst


@override_settings(
    BLAST_RETRY_DELAY_TIMEOUT_S=40.0,
    BLAST_RETRY_DELAY_S=5.0,
    BLAST_RETRY_GROWTH_AFTER=2,
    BLAST_RETRY_GROWTH_FACTOR=2.0,
    BLAST_RETRY_MAX_DELAY_S=120.0,
    BLAST_RETRY_JITTER=0.1,
    BLAST_BAN_PAUSE_S=7200.0,
)
def test_from_settings_reads_every_setting() -> None:
    assert RetryPolicy.from_settings() == RetryPolicy(
        timeout_delay_s=40.0,
        delay_s=5.0,
        growth_after=2,
        growth_factor=2.0,
        max_delay_s=120.0,
        jitter=0.1,
        ban_pause_s=7200.0,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay_s": -1.0},
        {"timeout_delay_s": -0.1},
        {"max_delay_s": math.nan},
        {"ban_pause_s": -1.0},
        {"restart_window_s": -1.0},
        {"growth_after": -1},
        {"growth_factor": 0.9},
        {"jitter": -0.1},
        {"jitter": 1.1},
        {"restart_burst": -1},
    ],
)
def test_invalid_policy_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        POLICY.delay_s = 1.0  # type: ignore[misc]
