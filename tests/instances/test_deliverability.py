"""Deliverability rules of an instance's sending: warm-up caps for a number
that paired, slow-downs and pauses after rate-limit nacks (with the alerts
they raise), and a 4402 ban's alert. The policy functions are pure; the
outbox and the alert transitions are driven as the worker and the evaluator
drive them."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from campaigns.models import Message
from engine import outbox
from instances import restrictions
from instances.models import ConnectionEvent, EventKind, Instance
from instances.sending import effective, warmup_cap
from monitoring import transitions
from tests.fixtures.cast import Cast, build_cast

DAY = 86_400.0
T0 = 1_700_000_000.0
SCHEDULE = (20, 40, 80)


@pytest.fixture
def cast(db: Any) -> Cast:
    return build_cast()


# --- warm-up ----------------------------------------------------------------------------


@pytest.mark.parametrize(("age_days", "cap"), [(0, 20), (0.99, 20), (1, 40), (2.5, 80), (3, None), (30, None)])
def test_a_paired_number_warms_up_day_by_day(age_days: float, cap: int | None) -> None:
    day, found = warmup_cap(T0, T0 + age_days * DAY, SCHEDULE)
    assert found == cap
    assert day == (int(age_days) if cap is not None else None)


def test_warm_up_caps_never_raise_the_instances_own_cap_and_can_be_turned_off() -> None:
    base = {"delay_min_s": 0.0, "delay_max_s": 0.0, "hourly_cap": 200, "now": T0 + 1.5 * DAY}
    warm = {"warmup": True, "warmup_started_at": T0, "schedule": SCHEDULE}
    assert effective(**base, daily_cap=1000, **warm).daily_cap == 40
    assert effective(**base, daily_cap=30, **warm).daily_cap == 30
    assert effective(**base, daily_cap=0, **warm).daily_cap == 40  # "no cap" still warms up
    assert effective(**base, daily_cap=1000, **{**warm, "warmup": False}).daily_cap == 1000
    assert effective(**base, daily_cap=1000, warmup=True, warmup_started_at=None, schedule=SCHEDULE).daily_cap == 1000


def test_a_slowed_instance_waits_longer_and_sends_less_and_a_paused_one_waits() -> None:
    slowed = effective(
        delay_min_s=5, delay_max_s=10, hourly_cap=200, daily_cap=0, now=T0, slowed_until=T0 + 1, slowdown_factor=2
    )
    assert (slowed.delay_min_s, slowed.delay_max_s, slowed.hourly_cap, slowed.daily_cap) == (10, 20, 100, 0)
    assert slowed.slowed
    unpaced = effective(delay_min_s=0, delay_max_s=0, hourly_cap=0, daily_cap=0, now=T0, slowed_until=T0 + 1)
    assert (unpaced.delay_min_s, unpaced.delay_max_s) == (1.0, 1.0)  # never back-to-back while limited
    over = effective(delay_min_s=5, delay_max_s=10, hourly_cap=200, daily_cap=0, now=T0, slowed_until=T0)
    assert not over.slowed and over.delay_min_s == 5
    paused = effective(delay_min_s=0, delay_max_s=0, hourly_cap=0, daily_cap=0, now=T0, paused_until=T0 + 60)
    assert paused.paused_until == T0 + 60
    assert effective(delay_min_s=0, delay_max_s=0, hourly_cap=0, daily_cap=0, now=T0, paused_until=T0).paused_until == 0


# --- restriction nacks through the outbox ---------------------------------------------------


@pytest.mark.parametrize(
    ("error", "limits"),
    [
        ("rate_limited", True),
        ("RATE-OVERLIMIT", True),
        ("whatsapp_error_463: reach-out time-lock", True),
        ("whatsapp_error_500", False),
        ("send_failed", False),
        ("", False),
    ],
)
def test_which_nack_errors_mean_the_network_limits_the_account(error: str, limits: bool) -> None:
    assert restrictions.is_restriction(error) is limits


def _nack(instance: Instance, cast: Cast, error: str, at: float) -> Message:
    message = Message.objects.create(tenant=cast.tenant_a, instance=instance, to="+5511999990001", text="x", attempts=1)
    outbox.apply(outbox.Outcomes(nacks={message.key.hex: (False, error, None, at)}), default_nack_retry_s=30)
    return message


@pytest.mark.django_db
def test_rate_limit_nacks_slow_the_instance_then_pause_it_and_the_pause_ends(cast: Cast, settings: Any) -> None:
    settings.BLAST_SLOWDOWN_S = 600
    settings.BLAST_RESTRICTION_PAUSE_AFTER = 3
    settings.BLAST_RESTRICTION_PAUSE_S = 900
    instance = cast.instance_a
    now = time.time()
    _nack(instance, cast, "send_failed", now)  # not a limit: nothing happens
    instance.refresh_from_db()
    assert instance.slowed_until is None
    _nack(instance, cast, "rate_limited", now)
    instance.refresh_from_db()
    assert instance.slowed_until is not None and instance.paused_until is None
    assert abs(instance.slowed_until.timestamp() - (now + 600)) < 1
    _nack(instance, cast, "whatsapp_error_463", now + 1)
    assert ConnectionEvent.objects.filter(instance=instance, kind=EventKind.SLOWED).count() == 1
    assert not ConnectionEvent.objects.filter(instance=instance, kind=EventKind.RESTRICTED).exists()
    _nack(instance, cast, "rate_limited", now + 2)
    instance.refresh_from_db()
    assert instance.paused_until is not None
    assert ConnectionEvent.objects.filter(instance=instance, kind=EventKind.RESTRICTED).count() == 1
    # The worker's next read carries the slow-down and the pause.
    queued = Message.objects.create(tenant=cast.tenant_a, instance=instance, to="+5511999990002", text="next")
    Instance.objects.filter(pk=instance.pk).update(send_delay_min_s=4, send_delay_max_s=6, hourly_cap=100)
    [(policy, batch, _)] = outbox.next_batches([(instance.pk, [], 10)], time.time())
    assert (policy.delay_min_s, policy.delay_max_s, policy.hourly_cap) == (8, 12, 50)
    assert policy.paused_until == pytest.approx(instance.paused_until.timestamp())
    assert queued.pk in [m.id for m in batch]
    # When the pause is over, the recovery job records its end once.
    later = instance.paused_until + dt.timedelta(seconds=1)
    assert restrictions.lift_ended(later) == [instance.pk]
    assert restrictions.lift_ended(later) == []
    assert ConnectionEvent.objects.filter(instance=instance, kind=EventKind.RESTRICTION_LIFTED).count() == 1


@pytest.mark.django_db
def test_a_warming_up_instance_reads_its_warm_up_cap(cast: Cast, settings: Any) -> None:
    settings.BLAST_WARMUP_ENABLED = True
    settings.BLAST_WARMUP_SCHEDULE = [20, 40]
    started = dt.datetime.now(dt.UTC) - dt.timedelta(days=1, hours=1)
    Instance.objects.filter(pk=cast.instance_a.pk).update(warmup=True, warmup_started_at=started, daily_cap=1000)
    Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990002", text="hi")
    [(policy, _, _)] = outbox.next_batches([(cast.instance_a.pk, [], 10)], time.time())
    assert policy.daily_cap == 40
    settings.BLAST_WARMUP_ENABLED = False
    [(policy, _, _)] = outbox.next_batches([(cast.instance_a.pk, [], 10)], time.time())
    assert policy.daily_cap == 1000


# --- alerts ---------------------------------------------------------------------------------


def test_a_4402_ban_raises_one_alert_that_resolves_when_the_number_is_back() -> None:
    active: dict[str, str] = {}
    fired = transitions.instance_event(active, transitions.DISCONNECT, "temporarily_banned")
    assert fired == [transitions.Change("temporarily_banned", "firing", "temporarily_banned")]
    assert transitions.instance_event(active, transitions.DISCONNECT, "temporarily_banned") == []
    resolved = transitions.instance_event(active, transitions.READY, "")
    assert resolved == [transitions.Change("temporarily_banned", "resolved", "temporarily_banned")]


def test_a_pause_for_limits_raises_one_alert_resolved_when_sending_resumes() -> None:
    active: dict[str, str] = {}
    assert [c.status for c in transitions.instance_event(active, transitions.RESTRICTED, "")] == ["firing"]
    assert transitions.instance_event(active, transitions.RESTRICTED, "") == []
    assert [c.status for c in transitions.instance_event(active, transitions.RESTRICTION_LIFTED, "")] == ["resolved"]


# --- the sending policy through the API ---------------------------------------------------


@pytest.mark.django_db
def test_the_sending_policy_is_read_and_changed_through_the_api_and_the_next_read_follows(
    cast: Cast, settings: Any
) -> None:
    url = f"/api/v1/instances/{cast.instance_a.key}/sending-policy"
    shown = cast.owner.get(url)
    assert shown.status_code == 200, shown.content
    assert set(shown.json()) == {
        "send_delay_min_s",
        "send_delay_max_s",
        "hourly_cap",
        "daily_cap",
        "warmup",
        "typing",
        "send_hours_start",
        "send_hours_end",
        "send_timezone",
        "send_days",
        "warmup_started_at",
        "slowed_until",
        "paused_until",
        "in_force",
    }
    changed = cast.owner.patch(url, {"send_delay_min_s": 3, "send_delay_max_s": 7, "hourly_cap": 30}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["in_force"] | {"daily_cap": 0} == {
        "delay_min_s": 3.0,
        "delay_max_s": 7.0,
        "hourly_cap": 30,
        "daily_cap": 0,
        "warmup_day": None,
        "slowed": False,
        "paused": False,
        "hours_open_at": None,
    }
    Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990002", text="hi")
    [(policy, _, _)] = outbox.next_batches([(cast.instance_a.pk, [], 10)], time.time())
    assert (policy.delay_min_s, policy.delay_max_s, policy.hourly_cap) == (3, 7, 30)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"send_delay_min_s": 10, "send_delay_max_s": 5}, "send_delay_max_s", "below the minimum"),
        ({"send_delay_min_s": -1}, "send_delay_min_s", "greater than or equal to 0"),
        ({"hourly_cap": 1.5}, "hourly_cap", "valid integer"),
        ({"daily_cap": "100"}, "daily_cap", "valid integer"),
        ({"warmup": "no"}, "warmup", "valid boolean"),
        ({"slowed_until": None}, "slowed_until", "read-only"),
    ],
)
def test_a_bad_policy_gets_a_400_naming_the_field(cast: Cast, body: dict[str, Any], field: str, says: str) -> None:
    answer = cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}/sending-policy", body, format="json")
    assert answer.status_code == 400, answer.content
    assert says in " ".join(answer.json()[field])


@pytest.mark.django_db
def test_another_tenants_policy_is_not_found(cast: Cast) -> None:
    url = f"/api/v1/instances/{cast.instance_b.key}/sending-policy"
    assert cast.owner.get(url).status_code == 404
    assert cast.owner.patch(url, {"hourly_cap": 1}, format="json").status_code == 404
    cast.instance_b.refresh_from_db()
    assert cast.instance_b.hourly_cap != 1
