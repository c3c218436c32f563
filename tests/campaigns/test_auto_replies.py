"""Auto-reply rules: which rule answers (exact, contains, regex with a time
limit; priority order), the cool-down per contact that keeps two bots from
answering each other for ever, stop keywords and opt-outs first, a frame
seen twice answered once; and the rules' API and admin, tenant-scoped.

(The reply leaving through a real worker to the simulator is
test_auto_replies_end_to_end.py.)
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from campaigns import optouts
from campaigns.inbound import handle_inbound
from campaigns.models import AutoReplyContact, AutoReplyRule, InboundMessage, Message, OptOutSource, ReplyMatch
from media.models import Media
from tests.campaigns.conftest import URLS
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

CUSTOMER = "+5511999990001"


def rule(cast: Cast, pattern: str, match: str = ReplyMatch.CONTAINS, **fields: Any) -> AutoReplyRule:
    fields.setdefault("reply_text", f"answer to {pattern}")
    return AutoReplyRule.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, name=pattern, match=match, pattern=pattern, **fields
    )


def replies_to(phone: str = CUSTOMER) -> list[str]:
    return list(Message.objects.filter(to=phone).order_by("id").values_list("text", flat=True))


@pytest.mark.parametrize(
    ("match", "pattern", "text", "answered"),
    [
        (ReplyMatch.EXACT, "price", "  PRICE ", True),
        (ReplyMatch.EXACT, "opening hours", "opening   hours", True),
        (ReplyMatch.EXACT, "price", "what is the price?", False),
        (ReplyMatch.CONTAINS, "price", "What is the PRICE of the blue one?", True),
        (ReplyMatch.CONTAINS, "price", "how much?", False),
        (ReplyMatch.REGEX, r"\border\s*#?\d+", "Where is ORDER #4521?", True),
        (ReplyMatch.REGEX, r"^\d{5}$", "zip 12345", False),
    ],
)
def test_a_rule_answers_the_messages_its_pattern_matches(
    cast: Cast, match: str, pattern: str, text: str, answered: bool
) -> None:
    made = rule(cast, pattern, match)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, text)
    inbound = InboundMessage.objects.get()
    if answered:
        reply = Message.objects.get(to=CUSTOMER)
        assert (reply.instance_id, reply.text, reply.status) == (cast.instance_a.pk, made.reply_text, "queued")
        assert (inbound.auto_reply_id, inbound.auto_reply_rule_id) == (reply.pk, made.pk)
    else:
        assert replies_to() == [] and inbound.auto_reply_id is None


def test_the_first_matching_rule_by_priority_answers_and_disabled_rules_never(cast: Cast) -> None:
    rule(cast, "hours", priority=50, reply_text="general", enabled=False)
    rule(cast, "hours", priority=200, reply_text="late")
    rule(cast, "hours", priority=100, reply_text="first")
    rule(cast, "hours", priority=100, reply_text="same priority, newer")
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "your hours?")
    assert replies_to() == ["first"]


def test_another_instances_rule_does_not_answer(cast: Cast) -> None:
    rule(cast, "price")
    handle_inbound(cast.instance_a2.pk, "srv-1", CUSTOMER, "price")
    assert replies_to() == []


def test_a_contact_is_answered_once_per_cool_down_whatever_rule_matches(cast: Cast) -> None:
    rule(cast, "price", cooldown_s=600, reply_text="prices")
    rule(cast, "hours", cooldown_s=600, reply_text="hours")
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "price")
    handle_inbound(cast.instance_a.pk, "srv-2", CUSTOMER, "price")
    handle_inbound(cast.instance_a.pk, "srv-3", CUSTOMER, "hours")
    handle_inbound(cast.instance_a.pk, "srv-4", "+5511999990002", "hours")  # another contact: its own cool-down
    assert replies_to() == ["prices"]
    assert replies_to("+5511999990002") == ["hours"]
    assert InboundMessage.objects.filter(auto_reply__isnull=False).count() == 2

    # Once the cool-down has passed, the contact is answered again.
    AutoReplyContact.objects.filter(phone=CUSTOMER).update(
        last_reply_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=601)
    )
    handle_inbound(cast.instance_a.pk, "srv-5", CUSTOMER, "hours")
    assert replies_to() == ["prices", "hours"]


def test_two_bots_answering_each_other_exchange_one_reply_per_cool_down(cast: Cast) -> None:
    """Instance A's bot answers anything; the other side is a bot that
    answers every message it gets. Each turn A receives a new message."""
    rule(cast, r".", ReplyMatch.REGEX, reply_text="Thanks, we will get back to you")
    for turn in range(20):
        handle_inbound(cast.instance_a.pk, f"bot-{turn}", CUSTOMER, "Auto-reply: I am away")
    assert len(replies_to()) == 1


def test_stop_keywords_come_first_and_opted_out_contacts_are_never_answered(cast: Cast) -> None:
    rule(cast, "stop", reply_text="would answer a stop")
    rule(cast, r".*", ReplyMatch.REGEX, reply_text="anything", priority=500)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "STOP")
    assert replies_to() == []
    assert optouts.opted_out_among(cast.tenant_a.pk, [CUSTOMER]) == {CUSTOMER}
    handle_inbound(cast.instance_a.pk, "srv-2", CUSTOMER, "what about the price")
    assert replies_to() == []  # opted out: nothing is sent, not even a failed row
    optouts.add(cast.tenant_a.pk, "+5511999990002", OptOutSource.API)
    handle_inbound(cast.instance_a.pk, "srv-3", "+5511999990002", "hello")
    assert Message.objects.count() == 0


def test_a_frame_seen_again_is_answered_once(cast: Cast) -> None:
    rule(cast, "price", cooldown_s=10)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "price")
    AutoReplyContact.objects.update(last_reply_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "price")  # the gateway repeats it after a reconnect
    assert len(replies_to()) == 1
    assert InboundMessage.objects.count() == 1


def test_a_catastrophic_regex_runs_out_of_time_and_the_next_rule_answers(cast: Cast, settings: Any) -> None:
    settings.BLAST_AUTO_REPLY_REGEX_TIMEOUT_S = 0.02
    rule(cast, r"(a+)+$", ReplyMatch.REGEX, reply_text="never", priority=1)
    rule(cast, "aaa", reply_text="fallback", priority=2)
    started = time.monotonic()
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "a" * 3000 + "!")
    # Python's re would take longer than the age of the universe here.
    assert time.monotonic() - started < 5
    assert replies_to() == ["fallback"]


def test_a_media_reply_sends_the_file_with_its_caption(cast: Cast) -> None:
    media = Media.objects.create(
        tenant=cast.tenant_a, kind="document", mime="application/pdf", filename="menu.pdf", size=10
    )
    rule(cast, "menu", reply_text="Our menu", reply_media=media)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "menu please")
    reply = Message.objects.get(to=CUSTOMER)
    assert (reply.media_id, reply.text) == (media.pk, "Our menu")


# --- the API --------------------------------------------------------------------------------


def test_rules_are_created_listed_changed_and_deleted_through_the_api(cast: Cast) -> None:
    created = cast.owner.post(
        "/api/v1/auto-replies",
        {"instance": str(cast.instance_a.key), "name": "Prices", "pattern": "price", "reply_text": "See our site"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body | {"id": "", "created_at": ""} == {
        "id": "",
        "instance": str(cast.instance_a.key),
        "name": "Prices",
        "match": "contains",
        "pattern": "price",
        "reply_text": "See our site",
        "reply_media": None,
        "cooldown_s": 3600,
        "priority": 100,
        "enabled": True,
        "created_at": "",
    }
    rule_url = f"/api/v1/auto-replies/{body['id']}"
    changed = cast.owner.patch(rule_url, {"match": "regex", "pattern": r"pric(e|ing)", "cooldown_s": 60}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["match"], changed.json()["cooldown_s"]) == ("regex", 60)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "your PRICING?")
    assert replies_to() == ["See our site"]
    assert (
        cast.owner.get(f"/api/v1/auto-replies?instance={cast.instance_a.key}").json()["results"][0]["id"]
        == (body["id"])
    )
    assert cast.owner.get(f"/api/v1/auto-replies?instance={cast.instance_a2.key}").json()["results"] == []
    assert cast.owner.delete(rule_url).status_code == 204
    assert cast.owner.get(rule_url).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"pattern": "(unclosed", "match": "regex"}, "pattern", "Not a valid regular expression"),
        ({"pattern": "   "}, "pattern", "Enter a pattern"),
        ({"pattern": "x" * 501}, "pattern", "no more than 500"),
        ({"reply_text": "  "}, "reply_text", "Give a reply text"),
        ({"cooldown_s": 5}, "cooldown_s", "greater than or equal to 10"),
        ({"cooldown_s": "60"}, "cooldown_s", "valid integer"),
        ({"match": "fuzzy"}, "match", "not a valid choice"),
        ({"reply_media": "00000000-0000-4000-8000-000000000000"}, "reply_media", "No media with id"),
        ({"colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_bad_rules_get_a_400_naming_the_field(cast: Cast, body: dict[str, Any], field: str, says: str) -> None:
    base = {"instance": str(cast.instance_a.key), "name": "r", "pattern": "hi", "reply_text": "hello"}
    answer = cast.owner.post("/api/v1/auto-replies", {**base, **body}, format="json")
    assert answer.status_code == 400, answer.content
    assert says in " ".join(answer.json()[field])
    assert AutoReplyRule.objects.count() == 0


def test_another_tenants_rules_instances_and_media_are_not_found(cast: Cast) -> None:
    theirs = AutoReplyRule.objects.create(
        tenant=cast.tenant_b, instance=cast.instance_b, name="theirs", pattern="x", reply_text="y"
    )
    their_media = Media.objects.create(tenant=cast.tenant_b, kind="image", mime="image/png", filename="a.png", size=1)
    assert cast.owner.get(f"/api/v1/auto-replies/{theirs.key}").status_code == 404
    assert cast.owner.patch(f"/api/v1/auto-replies/{theirs.key}", {"name": "mine"}, format="json").status_code == 404
    assert cast.owner.delete(f"/api/v1/auto-replies/{theirs.key}").status_code == 404
    assert cast.owner.get("/api/v1/auto-replies").json()["results"] == []
    onto_theirs = cast.owner.post(
        "/api/v1/auto-replies",
        {"instance": str(cast.instance_b.key), "name": "r", "pattern": "x", "reply_text": "y"},
        format="json",
    )
    assert onto_theirs.status_code == 400 and "No instance with id" in onto_theirs.json()["instance"][0]
    with_their_media = cast.owner.post(
        "/api/v1/auto-replies",
        {"instance": str(cast.instance_a.key), "name": "r", "pattern": "x", "reply_media": str(their_media.key)},
        format="json",
    )
    assert with_their_media.status_code == 400 and "No media with id" in with_their_media.json()["reply_media"][0]
    assert AutoReplyRule.objects.get().pk == theirs.pk


def test_media_named_by_a_rule_is_kept(cast: Cast) -> None:
    media = Media.objects.create(tenant=cast.tenant_a, kind="image", mime="image/png", filename="a.png", size=1)
    rule(cast, "menu", reply_media=media)
    answer = cast.owner.delete(f"/api/v1/media/{media.key}")
    assert answer.status_code == 409
    assert "auto-reply rules" in answer.json()["detail"]
