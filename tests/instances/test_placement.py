"""Placement of instances over live workers: even, stable, bounded, the same everywhere."""

from __future__ import annotations

import random

import pytest

from instances import placement

IDS = range(1, 9001)
CAP = 20_000


def _workers(n: int, capacity: int = CAP) -> dict[str, int]:
    return {f"host-{k}-1234-abcdef": capacity for k in range(n)}


@pytest.mark.parametrize("workers", [2, 3, 4, 7])
def test_every_worker_holds_within_ten_percent_of_an_even_share(workers: int) -> None:
    shares = placement.shares(placement.assign(IDS, _workers(workers)))
    even = len(IDS) / workers
    assert sum(shares.values()) == len(IDS)
    assert len(shares) == workers
    assert all(abs(count - even) <= 0.1 * even for count in shares.values()), shares


def test_a_worker_joining_takes_about_its_share_and_nothing_else_moves() -> None:
    three = _workers(3)
    four = {**three, "newcomer-1-000000": CAP}
    before, after = placement.assign(IDS, three), placement.assign(IDS, four)
    moved = [i for i in IDS if before[i] != after[i]]
    assert {after[i] for i in moved} == {"newcomer-1-000000"}
    assert len(moved) <= 1.1 * len(IDS) / 4


def test_a_worker_leaving_hands_only_its_own_instances_to_the_others() -> None:
    three = _workers(3)
    leaver = next(iter(three))
    before = placement.assign(IDS, three)
    after = placement.assign(IDS, {w: c for w, c in three.items() if w != leaver})
    moved = {i for i in IDS if before[i] != after[i]}
    assert moved == {i for i in IDS if before[i] == leaver}
    # Spread over the others, not handed to one of them.
    counts = placement.shares({i: after[i] for i in moved})
    assert len(counts) == 2 and min(counts.values()) >= 0.4 * len(moved)


def test_no_worker_is_given_more_than_its_capacity_and_the_rest_waits() -> None:
    placed = placement.assign(range(1, 301), {"a": 100, "b": 100})
    assert len(placed) == 200
    assert placement.shares(placed) == {"a": 100, "b": 100}


def test_shares_follow_capacities() -> None:
    shares = placement.shares(placement.assign(IDS, {"small": 1000, "large": 2000}))
    assert shares["large"] == pytest.approx(2 * shares["small"], rel=0.15)


def test_the_same_workers_and_instances_give_the_same_placement_in_any_order() -> None:
    workers = _workers(4)
    shuffled_ids = list(IDS)
    random.Random(5).shuffle(shuffled_ids)
    shuffled_workers = dict(reversed(list(workers.items())))
    assert placement.assign(shuffled_ids, shuffled_workers) == placement.assign(IDS, workers)


def test_no_live_worker_places_nothing() -> None:
    assert placement.assign(IDS, {}) == {}
    assert placement.assign(IDS, {"drained": 0}) == {}
