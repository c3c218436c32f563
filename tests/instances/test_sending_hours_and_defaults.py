"""Sending hours and a tenant's sending defaults.

- hours: open inside the window, closed outside it until the next opening,
  on the instance's own clock (time zones, overnight windows, a clock
  change); the worker's read carries the closed hours as a pause;
- both ends or neither, an end that is the start, an unknown time zone:
  400s naming the field, through the API and the admin form;
- a tenant's defaults are what its new instances start with (fields the
  creator set stay), a blank default keeps the platform's setting, and
  ``apply_to_instances`` writes them to every instance it has; another
  tenant's instances never change.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from campaigns.models import Message
from engine import outbox
from instances.admin import InstanceForm
from instances.models import Instance, SendingDefaults
from instances.sending import DAY_NAMES, effective, hours_open_at
from tests.fixtures.cast import Cast, build_cast

SAO_PAULO = "America/Sao_Paulo"  # UTC-3 all year
NINE, SIX_PM = dt.time(9), dt.time(18)


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.fixture
def cast(db: Any) -> Cast:
    return build_cast()


# --- the hours ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        ("2026-12-03T12:00:00+00:00", "2026-12-03T12:00:00+00:00"),  # 09:00 local: open
        ("2026-12-03T20:59:59+00:00", "2026-12-03T20:59:59+00:00"),  # 17:59:59: open
        ("2026-12-03T21:00:00+00:00", "2026-12-04T12:00:00+00:00"),  # 18:00: closed until tomorrow 09:00
        ("2026-12-03T05:00:00+00:00", "2026-12-03T12:00:00+00:00"),  # 02:00: closed until 09:00
    ],
)
def test_hours_are_read_on_the_instances_clock(now: str, opens: str) -> None:
    found = hours_open_at(NINE, SIX_PM, SAO_PAULO, at(now))
    assert (found or at(now)) == at(opens)


def test_an_overnight_window_spans_midnight() -> None:
    ten_pm, six_am = dt.time(22), dt.time(6)
    assert hours_open_at(ten_pm, six_am, "UTC", at("2026-12-03T23:30:00+00:00")) == 0
    assert hours_open_at(ten_pm, six_am, "UTC", at("2026-12-04T05:59:00+00:00")) == 0
    assert hours_open_at(ten_pm, six_am, "UTC", at("2026-12-04T06:00:00+00:00")) == at("2026-12-04T22:00:00+00:00")


def test_a_window_follows_a_clock_change() -> None:
    # Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 09:00 is 08:00 UTC then 07:00 UTC.
    assert hours_open_at(NINE, SIX_PM, "Europe/Berlin", at("2026-03-28T18:00:00+00:00")) == at(
        "2026-03-29T07:00:00+00:00"
    )


WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        ("2026-12-04T14:00:00+00:00", "2026-12-04T14:00:00+00:00"),  # Friday 14:00: open
        ("2026-12-04T18:00:00+00:00", "2026-12-07T09:00:00+00:00"),  # Friday 18:00: Monday 09:00
        ("2026-12-05T10:00:00+00:00", "2026-12-07T09:00:00+00:00"),  # Saturday, inside the hours: Monday
        ("2026-12-07T08:00:00+00:00", "2026-12-07T09:00:00+00:00"),  # Monday early: the same morning
    ],
)
def test_sending_days_skip_the_days_left_out(now: str, opens: str) -> None:
    found = hours_open_at(NINE, SIX_PM, "UTC", at(now), WEEKDAYS)
    assert (found or at(now)) == at(opens)


def test_an_overnight_window_belongs_to_the_day_it_starts_on() -> None:
    ten_pm, six_am = dt.time(22), dt.time(6)
    # Friday 22:00 to Saturday 06:00 is Friday's: open on Saturday at 03:00...
    assert hours_open_at(ten_pm, six_am, "UTC", at("2026-12-05T03:00:00+00:00"), ["fri"]) == 0
    # ...and Saturday's own 22:00 start is not: the next is the Friday after.
    assert hours_open_at(ten_pm, six_am, "UTC", at("2026-12-05T23:00:00+00:00"), ["fri"]) == at(
        "2026-12-11T22:00:00+00:00"
    )


def test_days_without_hours_are_whole_days() -> None:
    assert hours_open_at(None, None, "UTC", at("2026-12-04T23:59:00+00:00"), WEEKDAYS) == 0
    assert hours_open_at(None, None, "UTC", at("2026-12-05T00:00:00+00:00"), WEEKDAYS) == at(
        "2026-12-07T00:00:00+00:00"
    )
    # On the instance's own clock: Sunday 22:00 in São Paulo is Monday 01:00 UTC.
    assert hours_open_at(None, None, SAO_PAULO, at("2026-12-07T01:00:00+00:00"), WEEKDAYS) == at(
        "2026-12-07T03:00:00+00:00"
    )


def test_no_hours_means_any_hour() -> None:
    assert hours_open_at(None, None, "UTC", at("2026-12-03T03:00:00+00:00")) == 0


def test_closed_hours_pause_sending_like_a_pause_for_limits() -> None:
    now = at("2026-12-03T22:00:00+00:00")  # 19:00 in São Paulo
    policy = effective(
        delay_min_s=1, delay_max_s=2, hourly_cap=0, daily_cap=0, now=now, hours=(NINE, SIX_PM, SAO_PAULO, None)
    )
    assert policy.paused_until == policy.hours_open_at == at("2026-12-04T12:00:00+00:00")
    # A longer pause for limits wins.
    later = at("2026-12-05T00:00:00+00:00")
    policy = effective(
        delay_min_s=1,
        delay_max_s=2,
        hourly_cap=0,
        daily_cap=0,
        now=now,
        paused_until=later,
        hours=(NINE, SIX_PM, SAO_PAULO, None),
    )
    assert policy.paused_until == later


@pytest.mark.django_db
def test_the_workers_read_carries_closed_hours_as_a_pause(cast: Cast) -> None:
    now = time.time()
    local = dt.datetime.fromtimestamp(now, dt.UTC)
    # A two-hour window that opened three hours ago: closed now.
    start = (local - dt.timedelta(hours=3)).time().replace(microsecond=0)
    end = (local - dt.timedelta(hours=1)).time().replace(microsecond=0)
    Instance.objects.filter(pk=cast.instance_a.pk).update(
        send_hours_start=start, send_hours_end=end, send_timezone="UTC"
    )
    Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990002", text="hi")
    [(policy, batch, _)] = outbox.next_batches([(cast.instance_a.pk, [], 10)], now)
    assert len(batch) == 1
    assert policy.paused_until == pytest.approx(now + 21 * 3600, abs=2)
    # Every day but today, no hours: closed until midnight.
    others = [day for n, day in enumerate(DAY_NAMES) if n != local.weekday()]
    Instance.objects.filter(pk=cast.instance_a.pk).update(send_hours_start=None, send_hours_end=None, send_days=others)
    [(policy, _, _)] = outbox.next_batches([(cast.instance_a.pk, [], 10)], now)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    assert policy.paused_until == midnight.timestamp()


@pytest.mark.django_db
def test_hours_are_set_and_shown_through_the_api(cast: Cast) -> None:
    url = f"/api/v1/instances/{cast.instance_a.key}/sending-policy"
    answer = cast.owner.patch(
        url, {"send_hours_start": "09:00", "send_hours_end": "18:00", "send_timezone": SAO_PAULO}, format="json"
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["send_hours_start"], body["send_hours_end"], body["send_timezone"]) == ("09:00", "18:00", SAO_PAULO)
    closed = body["in_force"]["hours_open_at"] is not None
    assert body["in_force"]["paused"] is closed
    cleared = cast.owner.patch(url, {"send_hours_start": None, "send_hours_end": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["in_force"]["hours_open_at"] is None
    assert cleared.json()["send_days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    weekdays = cast.owner.patch(url, {"send_days": WEEKDAYS}, format="json")
    assert weekdays.status_code == 200 and weekdays.json()["send_days"] == WEEKDAYS


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"send_hours_start": "09:00"}, "send_hours_end", "both a start and an end"),
        ({"send_hours_end": "18:00"}, "send_hours_start", "both a start and an end"),
        ({"send_hours_start": "09:00", "send_hours_end": "09:00"}, "send_hours_end", "The end is the start"),
        ({"send_hours_start": "9 am", "send_hours_end": "18:00"}, "send_hours_start", "wrong format"),
        ({"send_timezone": "Mars/Olympus"}, "send_timezone", "not a time zone"),
        ({"send_timezone": "../../etc/passwd"}, "send_timezone", "not a time zone"),
        ({"send_timezone": 3}, "send_timezone", "Not a valid string"),
        ({"send_days": []}, "send_days", "may not be empty"),
        ({"send_days": ["monday"]}, "send_days", "not a valid choice"),
        ({"send_days": ["mon", "mon"]}, "send_days", "each once"),
        ({"send_days": "mon"}, "send_days", "Expected a list"),
    ],
)
def test_bad_hours_get_a_400_naming_the_field(cast: Cast, body: dict[str, Any], field: str, says: str) -> None:
    answer = cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}/sending-policy", body, format="json")
    assert answer.status_code == 400, answer.content
    assert says in str(answer.json()[field])
    cast.instance_a.refresh_from_db()
    assert cast.instance_a.send_hours_start is None


@pytest.mark.django_db
def test_the_admin_form_checks_hours_as_the_api_does(cast: Cast) -> None:
    instance = cast.instance_a
    data = {
        name: getattr(instance, name)
        for name in ("tenant", "name", "gateway", "send_delay_min_s", "send_delay_max_s", "hourly_cap", "daily_cap")
    }
    data.update(
        tenant=instance.tenant_id, gateway=instance.gateway_id, send_hours_start="09:00", send_timezone="Nowhere"
    )
    form = InstanceForm(data=data, instance=instance)
    form.is_valid()
    assert "both a start and an end" in " ".join(form.errors.get("send_hours_end", []))
    assert "not a time zone" in " ".join(form.errors.get("send_timezone", []))


# --- tenant defaults ----------------------------------------------------------------


@pytest.mark.django_db
def test_new_instances_start_with_the_tenants_defaults(cast: Cast, settings: Any) -> None:
    answer = cast.owner.patch(
        "/api/v1/sending-defaults",
        {
            "hourly_cap": 40,
            "send_delay_min_s": 8,
            "send_delay_max_s": 20,
            "send_hours_start": "08:00",
            "send_hours_end": "20:00",
            "send_timezone": SAO_PAULO,
            "typing": True,
            "send_days": WEEKDAYS,
        },
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["hourly_cap"] == 40 and answer.json()["daily_cap"] is None
    created = cast.owner.post("/api/v1/instances", {"name": "new-one", "gateway": cast.gateway.pk}, format="json")
    assert created.status_code == 201, created.content
    policy = cast.owner.get(f"/api/v1/instances/{created.json()['id']}/sending-policy").json()
    assert (policy["hourly_cap"], policy["send_delay_min_s"], policy["send_delay_max_s"]) == (40, 8.0, 20.0)
    assert (policy["send_hours_start"], policy["send_timezone"], policy["typing"]) == ("08:00", SAO_PAULO, True)
    assert policy["send_days"] == WEEKDAYS
    assert policy["daily_cap"] == settings.BLAST_DAILY_CAP  # blank default: the platform's
    # A field its creator set stays as set.
    own = Instance.objects.create(tenant=cast.tenant_a, name="own", gateway=cast.gateway, hourly_cap=5)
    assert (own.hourly_cap, own.send_delay_min_s) == (5, 8.0)
    # Another tenant's new instances are untouched.
    other = Instance.objects.create(tenant=cast.tenant_b, name="theirs", gateway=cast.gateway)
    assert (other.hourly_cap, other.send_hours_start) == (settings.BLAST_HOURLY_CAP, None)


@pytest.mark.django_db
def test_apply_to_instances_writes_the_defaults_to_every_instance_of_the_tenant(cast: Cast) -> None:
    theirs = cast.instance_b.hourly_cap
    answer = cast.owner.patch("/api/v1/sending-defaults", {"daily_cap": 150, "apply_to_instances": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert "apply_to_instances" not in answer.json()
    assert set(Instance.objects.filter(tenant=cast.tenant_a).values_list("daily_cap", flat=True)) == {150}
    cast.instance_b.refresh_from_db()
    assert cast.instance_b.hourly_cap == theirs and cast.instance_b.daily_cap != 150
    # Without it, existing instances keep their policy.
    assert cast.owner.patch("/api/v1/sending-defaults", {"daily_cap": 90}, format="json").status_code == 200
    assert set(Instance.objects.filter(tenant=cast.tenant_a).values_list("daily_cap", flat=True)) == {150}
    assert SendingDefaults.objects.get(tenant=cast.tenant_a).daily_cap == 90
    # Sent alone, it writes every default that is set.
    assert cast.owner.patch("/api/v1/sending-defaults", {"apply_to_instances": True}, format="json").status_code == 200
    assert set(Instance.objects.filter(tenant=cast.tenant_a).values_list("daily_cap", flat=True)) == {90}
    cast.instance_b.refresh_from_db()
    assert cast.instance_b.daily_cap != 90


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"send_delay_min_s": 50, "send_delay_max_s": 10}, "send_delay_max_s", "below the minimum"),
        ({"hourly_cap": -1}, "hourly_cap", "greater than or equal to 0"),
        ({"hourly_cap": 10**12}, "hourly_cap", "less than or equal to"),
        ({"send_hours_start": "08:00"}, "send_hours_end", "both a start and an end"),
        ({"send_timezone": "Atlantis"}, "send_timezone", "not a time zone"),
        ({"apply_to_instances": "yes"}, "apply_to_instances", "valid boolean"),
        ({"tenant": 2}, "tenant", "Unknown field"),
    ],
)
def test_bad_defaults_get_a_400_naming_the_field(cast: Cast, body: dict[str, Any], field: str, says: str) -> None:
    answer = cast.owner.patch("/api/v1/sending-defaults", body, format="json")
    assert answer.status_code == 400, answer.content
    assert says in " ".join(answer.json()[field])


@pytest.mark.django_db
def test_each_tenant_sees_its_own_defaults(cast: Cast) -> None:
    assert cast.owner.patch("/api/v1/sending-defaults", {"hourly_cap": 7}, format="json").status_code == 200
    assert cast.outsider.get("/api/v1/sending-defaults").json()["hourly_cap"] is None


def _tenant_form(cast: Cast, **defaults: str) -> dict[str, str]:
    data = {
        "slug": cast.tenant_a.slug,
        "name": cast.tenant_a.name,
        "sending_defaults-TOTAL_FORMS": "1",
        "sending_defaults-INITIAL_FORMS": "0",
        "sending_defaults-MIN_NUM_FORMS": "0",
        "sending_defaults-MAX_NUM_FORMS": "1",
        "sending_defaults-0-tenant": str(cast.tenant_a.pk),
    }
    data.update({f"sending_defaults-0-{name}": value for name, value in defaults.items()})
    return data


@pytest.mark.django_db
def test_an_operator_sets_a_tenants_defaults_in_the_admin(cast: Cast, admin_client: Any) -> None:
    url = f"/admin/instances/tenant/{cast.tenant_a.pk}/change/"
    assert "sending defaults for new instances" in admin_client.get(url).content.decode().lower()
    answer = admin_client.post(url, _tenant_form(cast, hourly_cap="25", send_timezone=SAO_PAULO))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    defaults = SendingDefaults.objects.get(tenant=cast.tenant_a)
    assert (defaults.hourly_cap, defaults.daily_cap, defaults.send_timezone) == (25, None, SAO_PAULO)
    assert defaults.send_days is None  # none ticked: the platform's, every day
    data = {**_tenant_form(cast), "sending_defaults-0-send_days": ["sat", "sun"]}
    data.update({"sending_defaults-INITIAL_FORMS": "1", "sending_defaults-0-id": str(defaults.pk)})
    assert admin_client.post(url, data).status_code == 302
    defaults.refresh_from_db()
    assert defaults.send_days == ["sat", "sun"]
    bad = admin_client.post(url, _tenant_form(cast, send_hours_start="08:00", send_timezone="Nowhere"))
    assert bad.status_code == 200
    page = bad.content.decode()
    assert "both a start and an end" in page and "not a time zone" in page
