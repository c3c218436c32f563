"""Number checks: which numbers are on the network, asked through an
instance's gateway (protocol v1.1 ``check``) and remembered per tenant.

:func:`request` stores a check and answers at once what the tenant's cache
knows (answers younger than ``BLAST_NUMBER_CHECK_CACHE_H``); the rest is
left pending and the instance's owner is hinted. The connection worker that
holds the instance's session takes pending checks in order, 50 numbers per
``check`` frame, ``BLAST_NUMBER_CHECK_PACE_S`` apart (:func:`next_batch`,
:func:`record`, :func:`fail`). Synchronous ORM code.

A campaign with ``check_numbers`` asks through the same path
(:func:`absent_for_campaign`, called by the expansion for each chunk): its
check is linked to the campaign, and when it ends, answered or failed, the
campaign's expansion is queued again to go on with the answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns import dispatch
from campaigns.models import Campaign, KnownNumber, NumberCheck, NumberCheckStatus
from instances import hints
from instances.models import Instance, Tenant

BATCH = 50  # PROTOCOL.md section 2.4: at most 50 numbers per `check`


def _known(tenant_id: int, phones: Sequence[str], now: dt.datetime) -> dict[str, bool]:
    since = now - dt.timedelta(hours=float(settings.BLAST_NUMBER_CHECK_CACHE_H))
    rows = KnownNumber.objects.filter(tenant_id=tenant_id, phone__in=list(phones), checked_at__gte=since)
    return dict(rows.values_list("phone", "on_network"))


def request(
    tenant: Tenant,
    instance: Instance,
    phones: Sequence[str],
    now: dt.datetime | None = None,
    campaign: Campaign | None = None,
) -> NumberCheck:
    """A new check of ``phones`` (E.164, distinct) through ``instance``."""
    now = now or timezone.now()
    known = _known(tenant.pk, phones, now)
    done = len(known) == len(phones)
    check = NumberCheck.objects.create(
        tenant=tenant,
        instance=instance,
        campaign=campaign,
        phones=list(phones),
        results=known,
        status=NumberCheckStatus.DONE if done else NumberCheckStatus.PENDING,
        created_at=now,
        finished_at=now if done else None,
    )
    if not done:
        transaction.on_commit(lambda: hints.send([instance.pk]))
    return check


def next_batch(instance_id: int) -> tuple[int, list[str]] | None:
    """The oldest pending check of the instance and its next numbers to ask."""
    for check_id, phones, results in (
        NumberCheck.objects.filter(instance_id=instance_id, status=NumberCheckStatus.PENDING)
        .order_by("id")
        .values_list("id", "phones", "results")
    ):
        left = [p for p in phones if p not in results]
        if left:
            return check_id, left[:BATCH]
        _finish(check_id, timezone.now())
    return None


def record(check_id: int, answers: dict[str, bool], now: dt.datetime | None = None) -> None:
    """Store what the gateway answered, in the check and in the tenant's cache."""
    now = now or timezone.now()
    with transaction.atomic():
        check = NumberCheck.objects.select_for_update().filter(pk=check_id).first()
        if check is None or check.status != NumberCheckStatus.PENDING:
            return
        asked = set(check.phones)
        check.results = {**check.results, **{p: bool(v) for p, v in answers.items() if p in asked}}
        fields = ["results"]
        if all(p in check.results for p in check.phones):
            check.status, check.finished_at = NumberCheckStatus.DONE, now
            fields += ["status", "finished_at"]
            _resume_campaign(check.campaign_id)
        check.save(update_fields=fields)
        for phone, on_network in answers.items():
            if phone in asked:
                KnownNumber.objects.update_or_create(
                    tenant_id=check.tenant_id, phone=phone, defaults={"on_network": bool(on_network), "checked_at": now}
                )


def fail(check_id: int, error: str, now: dt.datetime | None = None) -> None:
    with transaction.atomic():
        if NumberCheck.objects.filter(pk=check_id, status=NumberCheckStatus.PENDING).update(
            status=NumberCheckStatus.FAILED, error=error[:200], finished_at=now or timezone.now()
        ):
            _resume_campaign(NumberCheck.objects.filter(pk=check_id).values_list("campaign_id", flat=True).first())


def _finish(check_id: int, now: dt.datetime) -> None:
    with transaction.atomic():
        if NumberCheck.objects.filter(pk=check_id, status=NumberCheckStatus.PENDING).update(
            status=NumberCheckStatus.DONE, finished_at=now
        ):
            _resume_campaign(NumberCheck.objects.filter(pk=check_id).values_list("campaign_id", flat=True).first())


def _resume_campaign(campaign_id: int | None) -> None:
    """Queue the expansion of the campaign whose check just ended (after commit)."""
    if campaign_id is not None:
        transaction.on_commit(lambda: dispatch.dispatch_expansion(campaign_id))


def absent_for_campaign(
    campaign: Campaign, phones: Sequence[str], instance_id: int, now: dt.datetime
) -> set[str] | None:
    """The numbers of ``phones`` (E.164, distinct) not on the network, or
    None while the campaign's check of them is under way.

    The tenant's cache answers first. The others are asked in one check
    through ``instance_id``, linked to ``campaign``; once it is done its
    answers count (even when the cache keeps none). A check that failed
    (a gateway without ``check``, say) lets its numbers go out unchecked:
    the campaign is not held up by a gateway that cannot answer.
    """
    known = _known(campaign.tenant_id, phones, now)
    absent = {phone for phone, on_network in known.items() if not on_network}
    unknown = [p for p in phones if p not in known]
    if not unknown:
        return absent
    last = NumberCheck.objects.filter(campaign=campaign).order_by("-id").first()
    if last is None or not set(unknown) <= set(last.phones):
        tenant = Tenant.objects.get(pk=campaign.tenant_id)
        last = request(tenant, Instance.objects.get(pk=instance_id), unknown, now, campaign=campaign)
    if last.status == NumberCheckStatus.PENDING:
        return None
    return absent | {p for p in unknown if last.results.get(p) is False}
