"""The senders' coalescing call: many callers, few round trips, each caller
its own answer or its own error. Pure asyncio logic: ``run`` here records
what it was given instead of querying a database. The calls still run
through the worker's database thread (``database_sync_to_async``, which
tidies that thread's connections), hence the database mark."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.sender import Coalesced

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A ``run`` that doubles its arguments and records each call; it waits
    on ``gate`` (when set) so that a test can hold a run in progress."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self, args: list[int]) -> list[int]:
        self.calls.append(list(args))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.fail_with is not None:
            raise self.fail_with
        return [a * 2 for a in args]


async def test_callers_of_one_loop_turn_share_one_run_and_get_their_own_answers() -> None:
    run = Recorder()
    call = Coalesced(run)
    results = await asyncio.gather(*(call(n) for n in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert run.calls == [[0, 1, 2, 3, 4]]


async def test_callers_arriving_during_a_run_are_served_together_by_the_next() -> None:
    run = Recorder()
    run.gate = threading.Event()
    call = Coalesced(run)
    first = asyncio.create_task(call(1))
    await asyncio.to_thread(run.started.wait, 10)  # the first run is in the database thread
    later = [asyncio.create_task(call(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # they are waiting now
    run.gate.set()
    assert await first == 2
    assert [await t for t in later] == [4, 6, 8]
    assert run.calls == [[1], [2, 3, 4]]


async def test_an_error_reaches_every_caller_of_that_run_and_the_next_run_works() -> None:
    run = Recorder()
    run.fail_with = RuntimeError("database unavailable")
    call = Coalesced(run)
    outcomes = await asyncio.gather(call(1), call(2), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["database unavailable", "database unavailable"]
    run.fail_with = None
    assert await call(3) == 6


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    run = Recorder()
    run.gate = threading.Event()
    call = Coalesced(run)
    first = asyncio.create_task(call(1))
    await asyncio.to_thread(run.started.wait, 10)
    doomed = asyncio.create_task(call(2))
    kept = asyncio.create_task(call(3))
    await asyncio.sleep(0)
    doomed.cancel()
    run.gate.set()
    assert await first == 2
    assert await kept == 6
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_one_run_serves_at_most_its_limit_so_other_database_work_interleaves() -> None:
    class Small(Coalesced[int, int]):
        LIMIT = 2

    run = Recorder()
    call = Small(run)
    assert await asyncio.gather(*(call(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert run.calls == [[0, 1], [2, 3], [4]]
