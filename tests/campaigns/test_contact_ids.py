"""Contacts are named by a public UUID in the API, like every other object:
in their JSON, in their URLs and in the schema; the integer row id stays
inside. The migration that introduced the ids gives every existing contact
one of its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import Contact, ContactList
from tests.campaigns.conftest import URLS, make_list, numbers
from tests.fixtures.cast import Cast

BEFORE = [("campaigns", "0005_tenantwebhook_url_policy")]
AFTER = [("campaigns", "0008_contact_key_unique")]


def contacts_url(contact_list: ContactList) -> str:
    return f"/api/v1/contact-lists/{contact_list.key}/contacts"


@pytest.fixture
def contact_list(cast: Cast) -> ContactList:
    return make_list(cast.tenant_a, [(n, {"name": f"N{i}"}) for i, n in enumerate(numbers(3))])


@pytest.mark.django_db
@pytest.mark.urls(URLS)
def test_a_contact_is_named_by_its_public_uuid_in_json_and_urls(cast: Cast, contact_list: ContactList) -> None:
    url = contacts_url(contact_list)
    created = cast.owner.post(url, {"phone": "+5511999990001", "fields": {"name": "Ana"}}, format="json")
    assert created.status_code == 201, created.content
    contact = Contact.objects.get(contact_list=contact_list, phone="+5511999990001")
    assert created.json()["id"] == str(contact.key)

    listed = cast.owner.get(url).json()["results"]
    assert [row["id"] for row in listed] == [str(c.key) for c in Contact.objects.filter(contact_list=contact_list)]
    assert all(uuid.UUID(row["id"]) for row in listed)

    one = cast.owner.get(f"{url}/{contact.key}")
    assert one.status_code == 200 and one.json()["phone"] == "+5511999990001"
    assert cast.owner.delete(f"{url}/{contact.key}").status_code == 204
    assert not Contact.objects.filter(pk=contact.pk).exists()


@pytest.mark.django_db
@pytest.mark.urls(URLS)
def test_the_row_id_no_longer_names_a_contact(cast: Cast, contact_list: ContactList) -> None:
    contact = Contact.objects.filter(contact_list=contact_list).first()
    assert contact is not None
    response = cast.owner.get(f"{contacts_url(contact_list)}/{contact.pk}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No contact with this id in this list."}
    assert cast.owner.delete(f"{contacts_url(contact_list)}/{contact.pk}").status_code == 404
    assert Contact.objects.filter(pk=contact.pk).exists()


@pytest.mark.django_db
@pytest.mark.urls(URLS)
def test_a_contact_is_found_only_under_its_own_list_and_tenant(cast: Cast, contact_list: ContactList) -> None:
    contact = Contact.objects.filter(contact_list=contact_list).first()
    assert contact is not None
    other_list = make_list(cast.tenant_a, [(numbers(1, start=50)[0], {})], name="other")
    assert cast.owner.get(f"{contacts_url(other_list)}/{contact.key}").status_code == 404
    assert cast.outsider.get(f"{contacts_url(contact_list)}/{contact.key}").status_code == 404
    assert cast.outsider.delete(f"{contacts_url(contact_list)}/{contact.key}").status_code == 404
    assert Contact.objects.filter(pk=contact.pk).exists()


@pytest.mark.django_db
@pytest.mark.urls(URLS)
def test_uploaded_contacts_get_ids_of_their_own(cast: Cast) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="upload")
    body = "phone,name\n" + "".join(f"{n},N{i}\n" for i, n in enumerate(numbers(20)))
    response = cast.owner.generic("POST", f"/api/v1/contact-lists/{contact_list.key}/upload", body, "text/csv")
    assert response.status_code == 200, response.content
    keys = [row["id"] for row in cast.owner.get(contacts_url(contact_list)).json()["results"]]
    assert len(keys) == 20 and len(set(keys)) == 20


@pytest.mark.django_db
def test_the_schema_names_contacts_by_uuid(client: Any) -> None:
    schema = client.get("/api/schema/?format=json").json()
    path = schema["paths"]["/api/v1/contact-lists/{id}/contacts/{contact_id}"]
    for operation in path.values():
        parameter = next(p for p in operation["parameters"] if p["name"] == "contact_id")
        assert parameter["schema"] == {"type": "string", "format": "uuid"}
    contact = schema["components"]["schemas"]["Contact"]["properties"]["id"]
    assert contact["format"] == "uuid"


@pytest.mark.django_db
def test_public_ids_are_unique(cast: Cast, contact_list: ContactList) -> None:
    contact = Contact.objects.filter(contact_list=contact_list).first()
    assert contact is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(contact_list=contact_list, phone=numbers(1, start=90)[0], key=contact.key)


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_every_existing_contact_a_distinct_id() -> None:
    """From the schema before the ids, with contacts in it, to the unique ids
    (on the test database's backend: SQLite, or PostgreSQL with DATABASE_URL)."""
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        tenant = old.get_model("instances", "Tenant").objects.create(slug="acme", name="Acme")
        lists = old.get_model("campaigns", "ContactList")
        first = lists.objects.create(tenant=tenant, name="first", key=uuid.uuid4())
        second = lists.objects.create(tenant=tenant, name="second", key=uuid.uuid4())
        rows = old.get_model("campaigns", "Contact")
        rows.objects.bulk_create(
            [rows(contact_list=first, phone=n) for n in numbers(1200)]
            + [rows(contact_list=second, phone=n) for n in numbers(5)]
        )

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps.get_model("campaigns", "Contact")
        keys = list(new.objects.values_list("key", flat=True))
        assert len(keys) == 1205
        assert None not in keys and len(set(keys)) == len(keys)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
