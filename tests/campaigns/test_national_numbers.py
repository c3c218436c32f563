"""A national number (no country code) is refused with one message, word
for word the one docs/CAMPAIGNS.md quotes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures.cast import Cast

NATIONAL = "(11) 99999-0001"
MESSAGE = f"'{NATIONAL}' is not an international number: start it with + and the country code."
DOCS = Path(settings.BASE_DIR) / "docs" / "CAMPAIGNS.md"


@pytest.mark.django_db
@pytest.mark.urls("blast.urls")
def test_a_national_number_is_refused_with_the_documented_message(cast: Cast) -> None:
    for url, body in (
        (f"/api/v1/instances/{cast.instance_a.key}/messages", {"to": NATIONAL, "text": "hi"}),
        ("/api/v1/opt-outs", {"phone": NATIONAL}),
    ):
        response = cast.owner.post(url, body, format="json")
        assert response.status_code == 400, response.content
        assert list(response.json().values()) == [[MESSAGE]]


def test_the_docs_quote_the_message_word_for_word() -> None:
    assert f'`"{MESSAGE}"`' in DOCS.read_text()
