"""Pacing: when may the next send happen. Pure: times are numbers passed in."""

from __future__ import annotations

import itertools
import math

import pytest

from campaigns.pacing import DAY_S, HOUR_S, Pacing, next_send_at, prune

NOW = 1_800_000_000.0


def fixed(value: float):
    return lambda: value


def test_the_first_send_goes_at_once() -> None:
    policy = Pacing(20, 45, 0, 0)
    assert next_send_at(policy, [], None, NOW, fixed(0.99)) == NOW


@pytest.mark.parametrize(("draw", "delay"), [(0.0, 20.0), (0.5, 32.5), (0.999999, 44.999975)])
def test_the_delay_after_a_send_is_drawn_inside_min_and_max(draw: float, delay: float) -> None:
    policy = Pacing(20, 45, 0, 0)
    at = next_send_at(policy, [NOW - 5], NOW - 5, NOW, fixed(draw))
    assert at == pytest.approx(NOW - 5 + delay)


def test_a_delay_already_served_owes_nothing() -> None:
    policy = Pacing(20, 45, 0, 0)
    assert next_send_at(policy, [NOW - 100], NOW - 100, NOW, fixed(1.0)) == NOW


def test_rand_is_called_once_per_decision() -> None:
    calls = []

    def rand() -> float:
        calls.append(1)
        return 0.5

    next_send_at(Pacing(1, 2, 5, 5), [NOW - 1], NOW - 1, NOW, rand)
    assert len(calls) == 1


def test_the_hourly_cap_waits_until_the_oldest_send_of_the_hour_leaves_it() -> None:
    policy = Pacing(0, 0, 3, 0)
    sends = [NOW - 3000, NOW - 2000, NOW - 1000]
    assert next_send_at(policy, sends, sends[-1], NOW, fixed(0)) == NOW - 3000 + HOUR_S


def test_a_send_exactly_an_hour_old_no_longer_counts() -> None:
    policy = Pacing(0, 0, 3, 0)
    sends = [NOW - HOUR_S, NOW - 2000, NOW - 1000]
    assert next_send_at(policy, sends, sends[-1], NOW, fixed(0)) == NOW


def test_under_the_hourly_cap_nothing_waits() -> None:
    policy = Pacing(0, 0, 3, 0)
    sends = [NOW - 5000, NOW - 2000, NOW - 1000]  # one of them outside the hour
    assert next_send_at(policy, sends, sends[-1], NOW, fixed(0)) == NOW


def test_the_daily_cap_counts_a_rolling_24_hours() -> None:
    policy = Pacing(0, 0, 0, 4)
    sends = [NOW - 80_000, NOW - 70_000, NOW - 10, NOW - 5]
    assert next_send_at(policy, sends, sends[-1], NOW, fixed(0)) == NOW - 80_000 + DAY_S


def test_the_latest_constraint_wins() -> None:
    policy = Pacing(30, 30, 2, 100)
    sends = [NOW - 3590, NOW - 10]
    # delay: NOW + 20; hourly cap: NOW + 10 -> the delay wins.
    assert next_send_at(policy, sends, NOW - 10, NOW, fixed(0)) == NOW + 20
    sends = [NOW - 3000, NOW - 10]
    # hourly cap frees at NOW + 600 -> the cap wins.
    assert next_send_at(policy, sends, NOW - 10, NOW, fixed(0)) == NOW + 600


def test_a_thousand_sends_keep_every_hour_under_its_cap() -> None:
    """Simulate a worker that always sends as early as allowed."""
    policy = Pacing(1, 3, 50, 200)
    sends: list[float] = []
    now = NOW
    draws = iter([(i * 0.618) % 1 for i in range(1000)])
    for _ in range(1000):
        now = next_send_at(policy, sends, sends[-1] if sends else None, now, lambda: next(draws))
        sends.append(now)
    for i, t in enumerate(sends):
        in_hour = sum(1 for s in sends[: i + 1] if s > t - HOUR_S)
        in_day = sum(1 for s in sends[: i + 1] if s > t - DAY_S)
        assert in_hour <= 50 and in_day <= 200
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ((-1, 5, 1, 1), (0.0, 5.0, 1, 1)),
        ((10, 5, 1, 1), (10.0, 10.0, 1, 1)),
        ((math.nan, math.inf, -3, -1), (0.0, 0.0, 0, 0)),
        (("x", None, "y", None), (0.0, 0.0, 0, 0)),
    ],
)
def test_a_bad_policy_from_a_row_is_made_safe_not_raised(given: tuple, expected: tuple) -> None:
    policy = Pacing(*given)
    assert (policy.delay_min_s, policy.delay_max_s, policy.hourly_cap, policy.daily_cap) == expected


def test_a_campaign_delay_replaces_the_instances_and_keeps_its_caps() -> None:
    instance = Pacing(0, 0, 200, 1000)
    campaign = instance.with_delay(20, 45)
    assert campaign == Pacing(20, 45, 200, 1000)
    assert instance.with_delay(None, None) == instance
    assert Pacing(0, 0, 0, 0).unpaced and not campaign.unpaced


def test_prune_keeps_the_last_day() -> None:
    assert prune([NOW - DAY_S - 1, NOW - DAY_S, NOW - 5], NOW) == [NOW - 5]
