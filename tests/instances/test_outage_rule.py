"""The gateway outage rule at its boundaries, and its transitions in the database."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from instances import outages
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Gateway,
    GatewayEvent,
    GatewayEventKind,
    GatewayState,
    Instance,
    Status,
    Tenant,
)
from instances.outages import OutagePolicy
from instances.reasons import GATEWAY_REASONS, Reason
from instances.tokens import encrypt

POLICY = OutagePolicy()
T0 = 1_700_000_000.0


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


# -- the pure rule ---------------------------------------------------------------------


def test_half_of_the_running_instances_and_at_least_five_must_fail() -> None:
    assert POLICY.threshold(100) == 50
    assert POLICY.threshold(101) == 51
    assert POLICY.threshold(4) == 5
    assert not outages.is_down(49, 0, 100, POLICY, attempts_failed=49)
    assert outages.is_down(50, 0, 100, POLICY, attempts_failed=50)
    # A small gateway never goes down: its instances keep their own breakers.
    assert not outages.is_down(4, 0, 4, POLICY, attempts_failed=4)


def test_one_answered_instance_keeps_the_gateway_up_however_many_fail() -> None:
    assert not outages.is_down(10_000, 1, 10_000, POLICY, attempts_failed=10_000)


def test_sessions_lost_at_once_are_an_outage_only_once_reconnects_are_refused_too() -> None:
    # A gateway restart drops every session and then answers the reconnects:
    # the drops alone never take it down.
    assert not outages.is_down(10_000, 0, 10_000, POLICY, attempts_failed=0)
    assert not outages.is_down(10_000, 0, 10_000, POLICY, attempts_failed=POLICY.minimum - 1)
    # Once a few of the reconnects are refused, the drops count toward the share.
    assert outages.is_down(10_000, 0, 10_000, POLICY, attempts_failed=POLICY.minimum)


@pytest.mark.parametrize("reason", sorted(GATEWAY_REASONS))
def test_a_gateway_level_reason_before_the_gateway_answered_is_a_failed_attempt(reason: Reason) -> None:
    failure = outages.gateway_failure(reason, hello_at=None, ready_at=None, ended_at=T0, policy=POLICY)
    assert failure is outages.Failure.ATTEMPT


@pytest.mark.parametrize(
    "reason", [Reason.LOGGED_OUT, Reason.RATE_LIMITED, Reason.UNAUTHORIZED, Reason.PROTOCOL_ERROR, Reason.STOPPED]
)
def test_reasons_about_the_account_or_the_platform_are_never_the_gateways(reason: Reason) -> None:
    assert outages.gateway_failure(reason, hello_at=None, ready_at=None, ended_at=T0, policy=POLICY) is None
    assert outages.gateway_failure(reason, hello_at=T0 - 100, ready_at=T0 - 99, ended_at=T0, policy=POLICY) is None


def test_a_drop_soon_after_the_answer_is_a_flap_and_a_drop_of_an_established_session_a_lost_one() -> None:
    window = POLICY.flap_window_s
    flap = outages.gateway_failure(
        Reason.UNAVAILABLE, hello_at=T0 - 1, ready_at=T0 - window + 0.5, ended_at=T0, policy=POLICY
    )
    established = outages.gateway_failure(
        Reason.CONNECTION_LOST, hello_at=T0 - 100, ready_at=T0 - window, ended_at=T0, policy=POLICY
    )
    assert flap is None
    assert established is outages.Failure.LOST


def test_probe_delays_double_from_the_minimum_up_to_the_cap_and_jitter_never_exceeds_it() -> None:
    policy = OutagePolicy(probe_min_s=1.0, probe_max_s=15.0)
    assert outages.probe_delay(0, policy, rand=lambda: 0.5) == pytest.approx(1.0)
    assert outages.probe_delay(2, policy, rand=lambda: 0.5) == pytest.approx(4.0)
    assert outages.probe_delay(10, policy, rand=lambda: 0.5) == pytest.approx(15.0)
    rng = random.Random(7)
    draws = [outages.probe_delay(n % 8, policy, rand=rng.random) for n in range(10_000)]
    assert min(draws) >= 0.8
    assert max(draws) <= 15.0
    assert max(draws) > 14.0


def test_a_gateway_too_large_to_ramp_in_at_once_is_probed_more_often_but_never_below_the_minimum() -> None:
    policy = OutagePolicy(probe_min_s=1.0, probe_max_s=15.0, connect_rate=200.0)
    # Up to 1,000 instances ramp in within 5 s: the cap is the setting's.
    assert outages.probe_cap(policy, 0) == 15.0
    assert outages.probe_cap(policy, 1_000) == 15.0
    assert outages.probe_cap(policy, 5_000) == pytest.approx(3.0)
    assert outages.probe_cap(policy, 10_000) == pytest.approx(1.5)
    assert outages.probe_cap(policy, 1_000_000) == 1.0
    rng = random.Random(3)
    draws = [outages.probe_delay(20, policy, rand=rng.random, waiting=10_000) for _ in range(1_000)]
    assert max(draws) <= 1.5
    assert min(draws) >= 0.8 * 1.5 - 1e-9
    # Small gateways keep the full backoff.
    assert outages.probe_delay(20, policy, rand=lambda: 0.5, waiting=100) == pytest.approx(15.0)


# -- the transitions ---------------------------------------------------------------------


@pytest.fixture
def gateway(db: None) -> Gateway:
    return Gateway.objects.create(name="gw", url="ws://127.0.0.1:1")


def _instances(gateway: Gateway, count: int, **fields: object) -> list[Instance]:
    tenant, _ = Tenant.objects.get_or_create(slug="t", defaults={"name": "T"})
    token = encrypt("t")
    Instance.objects.bulk_create(
        Instance(
            tenant=tenant,
            gateway=gateway,
            name=f"i{gateway.pk}-{n}-{fields.get('status', '')}",
            token_encrypted=token,
            desired_state=DesiredState.RUNNING,
            **fields,
        )
        for n in range(count)
    )
    return list(Instance.objects.filter(gateway=gateway).order_by("id"))


def _down(gateway: Gateway, now: float = T0) -> bool:
    return outages.mark_down(
        gateway.pk, reason="unavailable", now=now, actor="worker:w", failing=60, running=100, policy=POLICY
    )


def test_many_workers_seeing_one_outage_record_it_once(gateway: Gateway) -> None:
    assert _down(gateway)
    assert not _down(gateway, T0 + 1)
    gateway.refresh_from_db()
    assert gateway.state == GatewayState.DOWN
    assert gateway.down_since == _dt(T0)
    assert gateway.outage_count == 1
    assert T0 + 0.8 <= gateway.next_probe_at.timestamp() <= T0 + 1.2
    event = GatewayEvent.objects.get(gateway=gateway)
    assert (event.kind, event.reason, event.actor) == (GatewayEventKind.DOWN, "unavailable", "worker:w")
    assert event.data["failing"] == 60


def test_a_failed_probe_backs_off_and_an_up_gateway_is_not_probed(gateway: Gateway) -> None:
    assert outages.probe_failed(gateway.pk, now=T0, policy=POLICY) is None
    _down(gateway)
    delays = [outages.probe_failed(gateway.pk, now=T0 + n, policy=POLICY, rand=lambda: 0.5) for n in range(6)]
    assert delays == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    gateway.refresh_from_db()
    assert gateway.probe_count == 6
    assert gateway.next_probe_at == _dt(T0 + 5 + 15.0)


def test_coming_up_releases_the_waiting_instances_in_a_ramp_and_closes_the_outages_breakers(gateway: Gateway) -> None:
    waiting = _instances(gateway, 400, status=Status.BACKING_OFF, retry_count=3)
    tripped, earlier = waiting[0], waiting[1]
    CircuitBreaker.objects.create(instance=tripped, state=BreakerState.OPEN, opened_at=_dt(T0 - 5), failures=[T0])
    # Opened long before the outage: the instance's own trouble, left alone.
    CircuitBreaker.objects.create(
        instance=earlier, state=BreakerState.OPEN, opened_at=_dt(T0 - 3600), cooldown_until=_dt(T0 + 60)
    )
    Instance.objects.filter(pk=tripped.pk).update(status=Status.CIRCUIT_OPEN)
    _down(gateway)
    outages.probe_failed(gateway.pk, now=T0 + 1, policy=POLICY)

    release = outages.mark_up(gateway.pk, now=T0 + 30, actor="worker:w", policy=POLICY)
    assert release is not None
    assert outages.mark_up(gateway.pk, now=T0 + 31, actor="worker:w", policy=POLICY) is None
    assert (len(release.released), release.breakers_closed, release.down_s) == (400, 1, 30.0)
    # Released at once, in random order (the workers keep the ramp at dispatch).
    assert sorted(release.released) == [i.pk for i in waiting]
    assert release.released != sorted(release.released)
    times = set(Instance.objects.filter(gateway=gateway).values_list("next_retry_at", flat=True))
    assert times == {_dt(T0 + 30)}
    assert not Instance.objects.filter(gateway=gateway).exclude(retry_count=0).exists()
    assert CircuitBreaker.objects.get(instance=tripped).state == BreakerState.CLOSED
    assert Instance.objects.get(pk=tripped.pk).status == Status.BACKING_OFF
    assert CircuitBreaker.objects.get(instance=earlier).state == BreakerState.OPEN
    assert ConnectionEvent.objects.filter(instance=tripped, kind=EventKind.BREAKER_CLOSED).count() == 1
    gateway.refresh_from_db()
    assert (gateway.state, gateway.down_since, gateway.next_probe_at) == (GatewayState.UP, None, None)
    up = GatewayEvent.objects.filter(gateway=gateway, kind=GatewayEventKind.UP).get()
    assert up.data["released"] == 400


def test_live_stopped_and_terminal_instances_are_not_released(gateway: Gateway) -> None:
    _instances(gateway, 3, status=Status.CONNECTED, retry_count=2)
    _instances(gateway, 3, status=Status.LOGGED_OUT, retry_count=2)
    # Desired stopped, waiting: not released either.
    first = Instance.objects.filter(gateway=gateway, status=Status.CONNECTED).first()
    assert first is not None
    Instance.objects.filter(pk=first.pk).update(desired_state=DesiredState.STOPPED, status=Status.BACKING_OFF)
    _down(gateway)
    release = outages.mark_up(gateway.pk, now=T0 + 10, actor="w", policy=POLICY)
    assert release is not None and release.released == []
    assert not Instance.objects.filter(gateway=gateway).exclude(next_retry_at=None).exists()
    assert set(Instance.objects.filter(gateway=gateway).values_list("retry_count", flat=True)) == {2}


def test_a_gateway_down_again_soon_after_coming_up_keeps_its_probe_backoff(gateway: Gateway) -> None:
    _down(gateway)
    for n in range(4):
        outages.probe_failed(gateway.pk, now=T0 + n, policy=POLICY)
    outages.mark_up(gateway.pk, now=T0 + 10, actor="w", policy=POLICY)
    assert _down(gateway, T0 + 12)
    gateway.refresh_from_db()
    assert gateway.probe_count == 4
    # Long after: a new outage starts probing at the minimum again.
    outages.mark_up(gateway.pk, now=T0 + 20, actor="w", policy=POLICY)
    assert _down(gateway, T0 + 20 + POLICY.window_s + 1)
    gateway.refresh_from_db()
    assert gateway.probe_count == 0


def test_an_operator_probe_request_moves_the_next_probe_to_now_and_is_audited(gateway: Gateway) -> None:
    assert not outages.request_probe(gateway.pk, actor="user:ops", now=T0)
    _down(gateway)
    assert outages.request_probe(gateway.pk, actor="user:ops", now=T0 + 0.1)
    gateway.refresh_from_db()
    assert gateway.next_probe_at == _dt(T0 + 0.1)
    assert GatewayEvent.objects.filter(kind=GatewayEventKind.PROBE_REQUESTED, actor="user:ops").count() == 1


def test_the_probe_takes_a_waiting_instance_with_a_closed_breaker_first(gateway: Gateway) -> None:
    from engine.store import probe_candidates

    waiting = _instances(gateway, 4, status=Status.BACKING_OFF)
    _instances(gateway, 3, status=Status.CONNECTED)
    for instance in waiting[1:]:
        CircuitBreaker.objects.create(instance=instance, state=BreakerState.OPEN, cooldown_until=_dt(T0 + 600))
    for _ in range(5):
        rows = probe_candidates(gateway.pk)
        assert rows[0].id == waiting[0].pk
        assert {row.id for row in rows} == {i.pk for i in waiting}


def test_gateway_events_like_connection_events_are_never_rewritten(gateway: Gateway) -> None:
    _down(gateway)
    event = GatewayEvent.objects.get(gateway=gateway)
    event.message = "changed"
    with pytest.raises(ValueError, match="Gateway events are append-only"):
        event.save()
