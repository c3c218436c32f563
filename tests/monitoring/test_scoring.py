"""The health score: pure arithmetic on three counts."""

from __future__ import annotations

import pytest
from django.conf import settings

from monitoring import health
from monitoring.scoring import BREAKER_PENALTY_CAP, score


def test_all_expected_instances_connected_scores_100() -> None:
    assert score(10, 10, 0) == 100


def test_nothing_expected_scores_100() -> None:
    assert score(0, 0, 0) == 100


@pytest.mark.parametrize(("connected", "expected", "value"), [(4, 5, 80), (80, 100, 80), (79, 100, 79), (2, 3, 66)])
def test_the_score_is_the_connected_share_rounded_down(connected: int, expected: int, value: int) -> None:
    assert score(connected, expected, 0) == value


def test_80_passes_and_79_does_not() -> None:
    assert settings.BLAST_HEALTH_PASS_SCORE == 80
    assert health.score_status(score(80, 100, 0), settings.BLAST_HEALTH_PASS_SCORE) == health.PASS
    assert health.score_status(score(79, 100, 0), settings.BLAST_HEALTH_PASS_SCORE) == health.WARN


def test_an_open_breaker_costs_half_an_instance_on_top() -> None:
    # 9 of 10 connected is 90; the tenth is behind an open breaker: -5.
    assert score(9, 10, 1) == 85
    # Among ten thousand instances, ten open breakers barely show.
    assert score(9_990, 10_000, 10) == 99


def test_the_breaker_penalty_is_capped() -> None:
    assert score(50, 100, 50) == 50 - BREAKER_PENALTY_CAP
    assert score(0, 10, 10) == 0


def test_out_of_range_counts_are_clamped() -> None:
    assert score(12, 10, 0) == 100
    assert score(-1, 10, -3) == 0
