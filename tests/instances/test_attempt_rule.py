"""One attempt rule: the pure function and its SQL form select the same instances.

``instances.attempts.decide`` answers "should an attempt be made now?" for an
instance's row; ``Instance.objects.attempt_due`` asks the same of the
database. The table below writes every combination that matters to the real
test database and demands that the two agree at several moments and
horizons; the unit tests after it pin the rule at its boundaries.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from engine.store import Row, load_rows
from instances import attempts
from instances.attempts import Asker, Decision, Fields, Verdict, Why, decide
from instances.breaker import Breaker, State, Transition
from instances.decisions import Policies, before_attempt
from instances.models import (
    TERMINAL_STATUSES,
    BreakerState,
    CircuitBreaker,
    DesiredState,
    Gateway,
    GatewayState,
    Instance,
    Status,
    Tenant,
)
from instances.tokens import encrypt

T0 = 1_700_000_000.0
POLICIES = Policies()

# Offsets from T0 in seconds; None: no value.
RETRY_AT = [None, -60.0, 0.0, 5.0, 10.0, 600.0]
BREAKERS: list[tuple[str | None, float | None]] = [
    (None, None),  # no breaker row at all
    (BreakerState.CLOSED, None),
    (BreakerState.HALF_OPEN, None),
    (BreakerState.OPEN, -60.0),
    (BreakerState.OPEN, 0.0),
    (BreakerState.OPEN, 5.0),
    (BreakerState.OPEN, 10.0),
    (BreakerState.OPEN, 600.0),
    (BreakerState.OPEN, None),  # a damaged row: open without a cooldown end
]
# (now, horizon) offsets from T0 at which the two must agree.
MOMENTS = [(0.0, 0.0), (0.0, 5.0), (0.0, 10.0), (0.0, 3600.0), (5.0, 5.0), (5.0, 9.0), (-61.0, -61.0), (601.0, 601.0)]


def _at(offset: float | None) -> float | None:
    return None if offset is None else T0 + offset


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _table() -> list[tuple[str, str, bool, tuple[str | None, float | None], float | None, bool]]:
    return list(
        itertools.product(
            [status.value for status in Status],
            [DesiredState.RUNNING, DesiredState.STOPPED],
            [False, True],
            BREAKERS,
            RETRY_AT,
            [False, True],  # the instance's gateway is down
        )
    )


@pytest.fixture
def table(db: None) -> dict[int, Fields]:
    """Every combination as an instance in the database; id -> its fields."""
    tenant = Tenant.objects.create(slug="rule", name="Rule")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:1")
    down = Gateway.objects.create(name="gw-down", url="ws://127.0.0.1:2", state=GatewayState.DOWN)
    token = encrypt("t")
    rows = _table()
    Instance.objects.bulk_create(
        Instance(
            tenant=tenant,
            gateway=down if gateway_down else gateway,
            name=f"row-{n}",
            token_encrypted=token,
            status=status,
            desired_state=desired,
            force_retry=force,
            next_retry_at=None if retry is None else _dt(T0 + retry),
        )
        for n, (status, desired, force, _breaker, retry, gateway_down) in enumerate(rows)
    )
    ids = dict(Instance.objects.filter(tenant=tenant).values_list("name", "id"))
    breakers = []
    expected: dict[int, Fields] = {}
    for n, (status, desired, force, (state, cooldown), retry, gateway_down) in enumerate(rows):
        instance_id = ids[f"row-{n}"]
        if state is not None:
            breakers.append(
                CircuitBreaker(
                    instance_id=instance_id,
                    state=state,
                    cooldown_until=None if cooldown is None else _dt(T0 + cooldown),
                )
            )
        expected[instance_id] = Fields(
            desired_state=desired,
            status=status,
            next_retry_at=_at(retry),
            force_retry=force,
            breaker_state=state or "closed",
            cooldown_until=_at(cooldown),
            gateway_down=gateway_down,
        )
    CircuitBreaker.objects.bulk_create(breakers)
    return expected


def test_the_table_covers_every_combination(table: dict[int, Fields]) -> None:
    assert len(table) == len(Status) * 2 * 2 * len(BREAKERS) * len(RETRY_AT) * 2
    assert Instance.objects.count() == len(table)


@pytest.mark.parametrize(("now", "horizon"), MOMENTS, ids=[f"now{n:+g}-horizon{h:+g}" for n, h in MOMENTS])
def test_the_queryset_selects_exactly_what_the_function_decides(
    table: dict[int, Fields], now: float, horizon: float
) -> None:
    by_function = {i for i, fields in table.items() if decide(fields, T0 + now).due_by(T0 + horizon)}
    by_query = set(Instance.objects.attempt_due(_dt(T0 + now), _dt(T0 + horizon)).values_list("id", flat=True))
    assert by_query - by_function == set(), [table[i] for i in sorted(by_query - by_function)][:5]
    assert by_function - by_query == set(), [table[i] for i in sorted(by_function - by_query)][:5]
    # Neither side is trivially empty or everything.
    assert 0 < len(by_function) < len(table)


def test_the_worker_reads_the_same_fields_the_rule_and_query_read(table: dict[int, Fields]) -> None:
    """``store.load_rows`` (the worker's read) gives the rule what the table holds."""
    rows = {row.id: row for row in load_rows(list(table))}
    for instance_id, fields in table.items():
        row = rows[instance_id]
        got = Fields(
            row.desired_state,
            row.status,
            row.next_retry_at,
            row.force_retry,
            row.breaker_state,
            row.cooldown_until,
            row.gateway_down,
        )
        assert got == fields
        assert row.decide(T0) == decide(fields, T0)


def test_attempt_due_refuses_a_horizon_before_now(db: None) -> None:
    with pytest.raises(ValueError, match="horizon"):
        Instance.objects.attempt_due(_dt(T0), _dt(T0 - 1))


# --- The status groups ------------------------------------------------------------


def test_every_status_is_in_exactly_one_group() -> None:
    groups = [attempts.WAITING, attempts.LIVE, attempts.TERMINAL]
    for status in Status:
        assert sum(status.value in group for group in groups) == 1, status
    assert set().union(*groups) == {status.value for status in Status}
    assert attempts.TERMINAL == {str(status) for status in TERMINAL_STATUSES}


# --- The rule at its boundaries -----------------------------------------------------


def running(status: str = Status.BACKING_OFF, **changes: object) -> Fields:
    return Fields(desired_state=DesiredState.RUNNING, status=status, **changes)  # type: ignore[arg-type]


def test_a_retry_due_exactly_now_is_made_now_and_a_microsecond_later_is_not() -> None:
    assert decide(running(next_retry_at=T0), T0) == Decision(Verdict.NOW, Why.DUE)
    assert decide(running(next_retry_at=T0 + 1e-6), T0) == Decision(Verdict.LATER, Why.NOT_DUE, at=T0 + 1e-6)
    assert decide(running(next_retry_at=None), T0).now


def test_a_later_attempt_is_due_by_a_horizon_at_or_after_it() -> None:
    later = decide(running(next_retry_at=T0 + 5), T0)
    assert later.due_by(T0 + 5)
    assert not later.due_by(T0 + 4.999)
    assert decide(running(), T0).due_by(T0)
    assert not decide(running(status=Status.LOGGED_OUT), T0).due_by(T0 + 3600)


def test_an_open_breaker_waits_for_its_cooldown_then_allows_the_trial() -> None:
    open_until = running(status=Status.CIRCUIT_OPEN, breaker_state="open", cooldown_until=T0, next_retry_at=T0)
    assert decide(open_until, T0 - 1e-6) == Decision(Verdict.LATER, Why.BREAKER_OPEN, at=T0)
    assert decide(open_until, T0) == Decision(Verdict.NOW, Why.DUE)


def test_an_open_breaker_and_a_later_retry_wait_for_both() -> None:
    fields = running(breaker_state="open", cooldown_until=T0 + 5, next_retry_at=T0 + 10)
    assert decide(fields, T0) == Decision(Verdict.LATER, Why.BREAKER_OPEN, at=T0 + 10)
    fields = running(breaker_state="open", cooldown_until=T0 + 10, next_retry_at=T0 + 5)
    assert decide(fields, T0).at == T0 + 10


def test_an_open_breaker_without_a_cooldown_end_counts_as_cooled_down() -> None:
    assert decide(running(breaker_state="open", cooldown_until=None), T0).now


def test_a_half_open_breaker_allows_its_trial() -> None:
    assert decide(running(breaker_state="half_open"), T0).now


def test_a_force_retry_passes_an_open_breaker_a_future_retry_and_a_terminal_status() -> None:
    forced = Decision(Verdict.NOW, Why.FORCED, forced=True)
    assert decide(running(force_retry=True, breaker_state="open", cooldown_until=T0 + 600), T0) == forced
    assert decide(running(force_retry=True, next_retry_at=T0 + 600), T0) == forced
    assert decide(running(Status.FORBIDDEN, force_retry=True), T0) == forced


def test_nothing_is_attempted_for_a_stopped_instance_even_when_forced() -> None:
    fields = Fields(DesiredState.STOPPED, Status.BACKING_OFF, force_retry=True)
    for asker in Asker:
        assert decide(fields, T0, asker) == Decision(Verdict.NEVER, Why.STOPPED)


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_terminal_status_is_never_retried_on_its_own(status: str) -> None:
    assert decide(running(status), T0) == Decision(Verdict.NEVER, Why.TERMINAL)


@pytest.mark.parametrize("status", sorted(attempts.LIVE))
def test_a_live_status_is_its_owners_business(status: str) -> None:
    forced = running(status, force_retry=True)
    assert decide(forced, T0) == Decision(Verdict.OWNER, Why.SESSION_LIVE)
    # The owner: the live session is the attempt, and it consumes the flag.
    assert decide(forced, T0, Asker.OWNER) == Decision(Verdict.NEVER, Why.SESSION_IS_ATTEMPT, forced=True)
    assert decide(running(status), T0, Asker.OWNER) == Decision(Verdict.NEVER, Why.SESSION_IS_ATTEMPT)
    # A worker that has just taken the lease: nobody stands behind the status.
    assert decide(running(status), T0, Asker.NEW_OWNER) == Decision(Verdict.NOW, Why.DUE)
    stale_open = running(status, breaker_state="open", cooldown_until=T0 + 5)
    assert decide(stale_open, T0, Asker.NEW_OWNER).verdict is Verdict.LATER


def test_the_owner_consumes_a_force_retry_whatever_the_row_says_of_the_breaker() -> None:
    fields = running(Status.CONNECTED, force_retry=True, breaker_state="open", cooldown_until=T0 + 600)
    decision = decide(fields, T0, Asker.OWNER)
    assert (decision.verdict, decision.forced) == (Verdict.NEVER, True)


# --- The askers use the rule --------------------------------------------------------


def _row(**changes: object) -> Row:
    values: dict[str, object] = {
        "id": 1,
        "desired_state": DesiredState.RUNNING,
        "status": Status.BACKING_OFF,
        "lease_epoch": 0,
        "next_retry_at": None,
        "force_retry": False,
        "breaker_state": "closed",
        "cooldown_until": None,
    }
    values.update(changes)
    return Row(**values)  # type: ignore[arg-type]


def test_the_worker_takes_the_lease_when_due_or_to_find_a_live_sessions_owner() -> None:
    assert _row().wants_session(T0)
    assert _row(status=Status.CONNECTED).wants_session(T0)
    assert not _row(next_retry_at=T0 + 1).wants_session(T0)
    assert not _row(breaker_state="open", cooldown_until=T0 + 1).wants_session(T0)
    assert _row(breaker_state="open", cooldown_until=T0 + 1, force_retry=True).wants_session(T0)
    assert not _row(status=Status.REPLACED).wants_session(T0)
    assert not _row(desired_state=DesiredState.STOPPED, force_retry=True).wants_session(T0)


def test_the_worker_waits_for_a_retry_or_a_cooldown_that_ends_within_its_horizon() -> None:
    assert _row(next_retry_at=T0 + 3).due_later(T0, 5) == 3
    assert _row(next_retry_at=T0 + 5).due_later(T0, 5) == 5
    assert _row(next_retry_at=T0 + 6).due_later(T0, 5) is None
    assert _row(breaker_state="open", cooldown_until=T0 + 2, next_retry_at=T0 + 2).due_later(T0, 5) == 2
    assert _row(next_retry_at=T0).due_later(T0, 5) is None  # due now, not later
    assert _row(next_retry_at=T0 + 3, force_retry=True).due_later(T0, 5) is None


def test_a_new_owner_attempts_a_forced_retry_past_an_open_breaker() -> None:
    tripped = Breaker(state=State.OPEN, cooldown_until=T0 + 600, opened_at=T0, trip_count=1)
    fields = running(Status.CIRCUIT_OPEN, force_retry=True, breaker_state="open", cooldown_until=T0 + 600)
    decision = before_attempt(fields, tripped, T0, POLICIES)
    assert (decision.attempt, decision.forced, decision.transition) == (True, True, None)


def test_a_new_owner_records_the_half_open_trial_when_the_cooldown_ended() -> None:
    tripped = Breaker(state=State.OPEN, cooldown_until=T0, opened_at=T0 - 600, trip_count=1)
    fields = running(Status.CIRCUIT_OPEN, next_retry_at=T0, breaker_state="open", cooldown_until=T0)
    decision = before_attempt(fields, tripped, T0, POLICIES)
    assert (decision.attempt, decision.forced) == (True, False)
    assert (decision.breaker.state, decision.transition) == (State.HALF_OPEN, Transition.HALF_OPENED)


def test_a_new_owner_leaves_the_breaker_of_a_terminal_instance_alone() -> None:
    tripped = Breaker(state=State.OPEN, cooldown_until=T0 - 1, opened_at=T0 - 601, trip_count=1)
    fields = running(Status.FORBIDDEN, breaker_state="open", cooldown_until=T0 - 1)
    decision = before_attempt(fields, tripped, T0, POLICIES)
    assert (decision.attempt, decision.verdict, decision.transition) == (False, Verdict.NEVER, None)
    assert decision.breaker is tripped


def test_a_new_owner_waits_while_the_breaker_is_open() -> None:
    tripped = Breaker(state=State.OPEN, cooldown_until=T0 + 1, opened_at=T0 - 599, trip_count=1)
    fields = running(Status.CIRCUIT_OPEN, next_retry_at=T0 + 1, breaker_state="open", cooldown_until=T0 + 1)
    decision = before_attempt(fields, tripped, T0, POLICIES)
    assert (decision.attempt, decision.verdict, decision.transition) == (False, Verdict.LATER, None)


# --- A down gateway -------------------------------------------------------------------


def test_a_down_gateway_holds_every_attempt_of_its_own_until_it_is_back() -> None:
    due = running(next_retry_at=T0 - 60, gateway_down=True)
    assert decide(due, T0) == Decision(Verdict.LATER, Why.GATEWAY_DOWN)
    assert not decide(due, T0).due_by(T0 + 3600)
    # Nor a half-open trial: the outage is not the breaker's to judge.
    trial = running(breaker_state="open", cooldown_until=T0 - 1, gateway_down=True)
    assert decide(trial, T0).verdict is Verdict.LATER


def test_an_operator_force_retry_still_makes_its_one_attempt_while_the_gateway_is_down() -> None:
    assert decide(running(force_retry=True, gateway_down=True), T0) == Decision(Verdict.NOW, Why.FORCED, forced=True)


def test_the_probe_attempts_past_the_down_gateway_breaker_and_retry_time_but_not_past_a_terminal_status() -> None:
    fields = running(next_retry_at=T0 + 600, breaker_state="open", cooldown_until=T0 + 600, gateway_down=True)
    assert decide(fields, T0, Asker.PROBE) == Decision(Verdict.NOW, Why.PROBE)
    assert decide(running(status=Status.LOGGED_OUT, gateway_down=True), T0, Asker.PROBE).verdict is Verdict.NEVER
    stopped = Fields(desired_state=DesiredState.STOPPED, status=Status.BACKING_OFF, gateway_down=True)
    assert decide(stopped, T0, Asker.PROBE).verdict is Verdict.NEVER
    decision = before_attempt(fields, Breaker(State.OPEN, cooldown_until=T0 + 600), T0, POLICIES, probe=True)
    assert decision.attempt
    assert not before_attempt(fields, Breaker(State.OPEN, cooldown_until=T0 + 600), T0, POLICIES).attempt
