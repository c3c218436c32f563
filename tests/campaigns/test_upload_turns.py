"""A web process imports one CSV upload at a time: another waits up to
``BLAST_CSV_IMPORT_WAIT_S`` for its turn, then is refused without being
read (the API's 429 with Retry-After, the admin form's error). Measured
against a real web process in test_upload_flood.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns import contacts
from campaigns.models import Contact, ContactList
from tests.campaigns.conftest import URLS
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

CSV = b"phone\n+5511999990001\n"


@pytest.fixture
def another_import(settings: Any) -> Iterator[None]:
    """An import under way in this process, for as long as the test runs."""
    settings.BLAST_CSV_IMPORT_WAIT_S = 0.2
    assert contacts._importing.acquire(timeout=5)
    try:
        yield
    finally:
        contacts._importing.release()


def test_an_api_upload_while_another_is_imported_is_a_429_with_retry_after(cast: Cast, another_import: None) -> None:
    list_id = cast.owner.post("/api/v1/contact-lists", {"name": "vip"}, format="json").json()["id"]
    response = cast.owner.generic("POST", f"/api/v1/contact-lists/{list_id}/upload", CSV, content_type="text/csv")
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == "1"
    assert response.json()["detail"].startswith("Another upload is being imported right now.")
    assert not Contact.objects.exists()


def test_an_admin_upload_while_another_is_imported_is_refused_on_the_form(cast: Cast, another_import: None) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="vip")
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="x"))
    url = reverse("admin:campaigns_contactlist_upload", args=[contact_list.pk])
    response = client.post(url, {"file": SimpleUploadedFile("c.csv", CSV, "text/csv")})
    assert response.status_code == 200
    assert "Another upload is being imported right now. Try again in a moment." in response.content.decode()
    assert not Contact.objects.exists()


def test_an_upload_gets_its_turn_once_the_other_import_ends(cast: Cast, settings: Any) -> None:
    settings.BLAST_CSV_IMPORT_WAIT_S = 0
    list_id = cast.owner.post("/api/v1/contact-lists", {"name": "vip"}, format="json").json()["id"]
    for _ in range(2):  # the first import let go of its turn: the second has it at once
        response = cast.owner.generic("POST", f"/api/v1/contact-lists/{list_id}/upload", CSV, content_type="text/csv")
        assert response.status_code == 200, response.content
