"""Contact lists: CRUD, CSV uploads (multipart or text/csv) with per-row
errors, E.164 normalisation, merged duplicates, bounded size; contacts."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.contacts import QUOTE_NOT_CLOSED
from campaigns.models import Contact, ContactList
from tests.campaigns.conftest import URLS, make_campaign
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]


def create_list(cast: Cast, name: str = "customers") -> dict[str, Any]:
    response = cast.owner.post("/api/v1/contact-lists", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def upload(cast: Cast, list_id: str, text: str | bytes, query: str = "", multipart: bool = False):
    url = f"/api/v1/contact-lists/{list_id}/upload{query}"
    data = text.encode() if isinstance(text, str) else text
    if multipart:
        return cast.owner.post(url, {"file": SimpleUploadedFile("contacts.csv", data, "text/csv")}, format="multipart")
    return cast.owner.generic("POST", url, data, content_type="text/csv")


def test_a_list_is_created_listed_renamed_and_deleted(cast: Cast) -> None:
    created = create_list(cast)
    assert created["name"] == "customers" and created["contacts"] == 0 and created["fields"] == []
    assert [x["id"] for x in cast.owner.get("/api/v1/contact-lists").json()["results"]] == [created["id"]]
    renamed = cast.owner.patch(f"/api/v1/contact-lists/{created['id']}", {"name": "vip"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "vip"
    assert cast.owner.delete(f"/api/v1/contact-lists/{created['id']}").status_code == 204
    assert not ContactList.objects.exists()


def test_a_duplicate_list_name_is_a_400_on_name(cast: Cast) -> None:
    create_list(cast)
    response = cast.owner.post("/api/v1/contact-lists", {"name": "customers"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["You already have a contact list with this name."]}
    # Another tenant may use the name.
    assert cast.outsider.post("/api/v1/contact-lists", {"name": "customers"}, format="json").status_code == 201


def test_a_csv_body_is_imported_normalised_and_merged(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    csv_text = (
        "Phone,First_Name,City\n"
        "+55 11 99999-0001,Ana,Rio\n"
        "5511999990002,Bo,\n"
        "+55 (11) 99999-0001,,Recife\n"  # the same number as row 2: merged
        "\n"
        "0055 11 99999 0003,Cy,Natal\n"
    )
    response = upload(cast, list_id, csv_text)
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("rows", "created", "updated", "duplicates", "invalid", "contacts")} == {
        "rows": 4,
        "created": 3,
        "updated": 0,
        "duplicates": 1,
        "invalid": 0,
        "contacts": 3,
    }
    assert body["fields"] == ["first_name", "city"] and body["errors"] == []
    stored = {c.phone: c.fields for c in Contact.objects.all()}
    assert stored == {
        "+5511999990001": {"first_name": "Ana", "city": "Recife"},
        "+5511999990002": {"first_name": "Bo", "city": ""},
        "+5511999990003": {"first_name": "Cy", "city": "Natal"},
    }


def test_bad_rows_are_reported_by_row_number_and_the_rest_imported(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    csv_text = (
        "phone,name\n"
        "+5511999990001,Ana\n"
        "not a number,Bo\n"
        ",Cy\n"
        "+1 555 000 0001,Di\n"
        '+5511999990002,"Ed, Jr",extra\n'
        "+5511999990003," + "x" * 1001 + "\n"
        "+5511999990004,Flo\n"
    )
    body = upload(cast, list_id, csv_text).json()
    assert body["created"] == 2 and body["invalid"] == 5
    assert body["errors"] == [
        {"row": 3, "message": "'not a number' is not an international number: start it with + and the country code."},
        {"row": 4, "message": "the phone number is empty."},
        {"row": 5, "message": "'+1 555 000 0001' is not a valid phone number."},
        {"row": 6, "message": "3 values but the header has 2 columns (a separator inside a value?)."},
        {"row": 7, "message": "the value of 'name' is 1001 characters long; at most 1000 are accepted."},
    ]
    assert set(Contact.objects.values_list("phone", flat=True)) == {"+5511999990001", "+5511999990004"}


def test_a_quote_never_closed_is_a_row_error_and_the_rows_after_it_are_imported(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    csv_text = 'phone,name\n+5511999990001,"Ana\n+5511999990002,Bo\n+5511999990003,"Cy"\n'
    for multipart in (False, True):
        body = upload(cast, list_id, csv_text, multipart=multipart).json()
        assert (body["rows"], body["invalid"], body["contacts"]) == (3, 1, 2)
        assert body["errors"] == [{"row": 2, "message": QUOTE_NOT_CLOSED}]
    assert set(Contact.objects.values_list("phone", flat=True)) == {"+5511999990002", "+5511999990003"}


def test_a_line_over_the_limit_is_a_400_on_file_naming_its_row(cast: Cast, settings: Any) -> None:
    list_id = create_list(cast)["id"]
    settings.BLAST_CSV_MAX_LINE_BYTES = 2048
    response = upload(cast, list_id, "phone,name\n+5511999990001,Ana\n+5511999990002," + "x" * 3000 + "\n")
    assert response.status_code == 400
    assert response.json() == {"file": ["Row 3 has a line of 3015 bytes; a line may be at most 2048 bytes."]}
    assert not Contact.objects.exists()


def test_a_second_upload_updates_existing_contacts_and_keeps_unset_values(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    upload(cast, list_id, "phone,name,city\n+5511999990001,Ana,Rio\n")
    body = upload(cast, list_id, "phone;name;plan\n+5511999990001;;gold\n+5511999990002;Bo;free\n").json()
    assert (body["created"], body["updated"], body["contacts"]) == (1, 1, 2)
    assert body["fields"] == ["name", "city", "plan"]
    assert Contact.objects.get(phone="+5511999990001").fields == {"name": "Ana", "city": "Rio", "plan": "gold"}
    assert upload(cast, list_id, "phone,name\n+5511999990002,Bo\n").json()["unchanged"] == 1


def test_a_multipart_upload_with_a_region_reads_national_numbers(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    response = cast.owner.post(
        f"/api/v1/contact-lists/{list_id}/upload",
        {"file": SimpleUploadedFile("c.csv", "\ufeffphone\n(11) 99999-0001\n".encode(), "text/csv"), "region": "BR"},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    assert list(Contact.objects.values_list("phone", flat=True)) == ["+5511999990001"]
    assert upload(cast, list_id, "phone\n(11) 99999-0002\n", query="?region=BR").json()["created"] == 1
    assert upload(cast, list_id, "phone\n(11) 99999-0002\n", query="?region=XX").status_code == 400


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"phone,name\n", "The file has a header row but no contacts."),
        (b"name,city\nAna,Rio\n", "no 'phone' column (found: name, city)"),
        (b"phone,name,name\n+5511999990001,a,b\n", "repeated column names: name"),
        (b"phone,first name\n+5511999990001,a\n", "column 2 'first name' is not a field name"),
        (b"phone,\n+5511999990001,a\n", "column 2 has no name"),
        ("phone\n+5511999990001\n".encode("utf-16"), "The file is not UTF-8 text"),
        (b"phone\n+551199999\x00\n", "The file is not valid CSV text: it holds NUL characters"),
    ],
)
def test_an_unusable_file_is_a_400_on_file_and_imports_nothing(cast: Cast, content: bytes, message: str) -> None:
    list_id = create_list(cast)["id"]
    # Django drops an empty file part from a multipart form: that case is a text/csv body only.
    for multipart in (False, True) if content else (False,):
        response = upload(cast, list_id, content, multipart=multipart)
        assert response.status_code == 400, response.content
        assert message in response.json()["file"][0], response.json()
    assert not Contact.objects.exists()


def test_uploads_are_bounded_in_size_and_rows(cast: Cast, settings: Any) -> None:
    list_id = create_list(cast)["id"]
    settings.BLAST_CSV_MAX_BYTES = 100
    big = "phone\n" + "+5511999990001\n" * 10
    response = upload(cast, list_id, big)
    assert response.status_code == 413 and "larger than 100 bytes" in response.json()["detail"]
    assert upload(cast, list_id, big, multipart=True).status_code in (400, 413)
    settings.BLAST_CSV_MAX_BYTES = 10_000
    settings.BLAST_CSV_MAX_ROWS = 3
    response = upload(cast, list_id, "phone\n" + "".join(f"+55119999900{n:02d}\n" for n in range(4)))
    assert response.status_code == 400
    assert response.json()["file"] == ["The file has more than 3 rows: split it into several uploads."]
    settings.BLAST_CSV_MAX_ROWS = 100
    settings.BLAST_CONTACT_LIST_MAX_CONTACTS = 2
    response = upload(cast, list_id, "phone\n" + "".join(f"+55119999900{n:02d}\n" for n in range(3)))
    assert response.json()["file"] == ["The list would hold 3 contacts; a list holds at most 2."]
    assert not Contact.objects.exists()


def test_a_json_body_to_the_upload_is_a_415(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    response = cast.owner.post(f"/api/v1/contact-lists/{list_id}/upload", {"phone": "+1"}, format="json")
    assert response.status_code == 415


def test_multipart_without_a_file_says_how_to_send_it(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    response = cast.owner.post(f"/api/v1/contact-lists/{list_id}/upload", {"region": "BR"}, format="multipart")
    assert response.status_code == 400
    assert "multipart field 'file'" in response.json()["file"][0]


def test_contacts_are_listed_added_merged_and_removed(cast: Cast) -> None:
    list_id = create_list(cast)["id"]
    url = f"/api/v1/contact-lists/{list_id}/contacts"
    created = cast.owner.post(url, {"phone": "+55 11 99999-0001", "fields": {"Name": "Ana"}}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["phone"] == "+5511999990001" and created.json()["fields"] == {"name": "Ana"}
    merged = cast.owner.post(url, {"phone": "+5511999990001", "fields": {"city": "Rio"}}, format="json")
    assert merged.status_code == 200 and merged.json()["fields"] == {"name": "Ana", "city": "Rio"}
    assert ContactList.objects.get().fields == ["name", "city"]
    assert cast.owner.get(url).json()["count"] == 1
    bad = cast.owner.post(url, {"phone": "+5511999990002", "fields": {"phone": "x", "a b": 1}}, format="json")
    assert bad.status_code == 400 and "fields" in bad.json()
    contact_id = created.json()["id"]
    assert cast.owner.get(f"{url}/{contact_id}").status_code == 200
    assert cast.owner.delete(f"{url}/{contact_id}").status_code == 204
    assert cast.owner.get(f"{url}/{contact_id}").status_code == 404
    assert cast.owner.get(f"{url}/abc").status_code == 404


def test_a_list_used_by_a_campaign_cannot_be_deleted(cast: Cast) -> None:
    created = create_list(cast)
    make_campaign(cast.tenant_a, ContactList.objects.get(), [cast.instance_a], name="launch")
    response = cast.owner.delete(f"/api/v1/contact-lists/{created['id']}")
    assert response.status_code == 409
    assert response.json()["detail"] == "Campaigns use this contact list (launch): delete them first."
