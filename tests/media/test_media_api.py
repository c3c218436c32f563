"""POST/GET/DELETE /api/v1/media and the signed links gateways fetch files by:
types told from content, sizes capped, URLs fetched once and never inside,
another tenant's media a 404."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Message
from media import links
from media.models import Media
from tests.campaigns.conftest import URLS
from tests.fixtures.cast import Cast
from tests.fixtures.files import serve_files
from tests.media.conftest import ELF, EXE, JPEG, PDF, PNG, sized

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS)]

TO = "+5511999990001"


def upload(cast: Cast, name: str, content: bytes, client: Any = None, **extra: str) -> Any:
    client = client or cast.owner
    return client.post("/api/v1/media", {"file": SimpleUploadedFile(name, content), **extra}, format="multipart")


def test_an_uploaded_image_is_stored_with_the_type_its_content_says(cast: Cast, media_root: Any) -> None:
    content = sized(PNG, 200 * 1024)
    response = upload(cast, "catalogue.PNG", content)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "image" and body["mime"] == "image/png"
    assert body["size"] == len(content) and body["filename"] == "catalogue.PNG"
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    media = Media.objects.get(key=body["id"])
    assert media.tenant == cast.tenant_a
    # Stored under the tenant and its id, never the name it came with.
    assert media.file.name == f"{cast.tenant_a.pk}/{media.key.hex}"
    assert (media_root / media.file.name).read_bytes() == content
    assert response["Location"] == f"/api/v1/media/{media.key}"
    assert cast.owner.get(f"/api/v1/media/{media.key}").json() == body
    assert [m["id"] for m in cast.owner.get("/api/v1/media").json()["results"]] == [body["id"]]


def test_a_pdf_is_a_document_and_its_name_is_cleaned(cast: Cast) -> None:
    response = upload(cast, "../../etc/Invoice 42.pdf", sized(PDF, 4096))
    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["filename"]) == ("document", "Invoice 42.pdf")
    named = upload(cast, "x.pdf", sized(PDF, 4096), filename="Factura.pdf")
    assert named.json()["filename"] == "Factura.pdf"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("photo.jpg", sized(ELF, 2048), "application/x-executable are not accepted"),
        ("photo.jpg", sized(EXE, 2048), "are not accepted"),
        ("notes.jpg", b"just some text, not an image\n" * 10, "could not be recognised"),
        ("empty.png", b"", "empty"),
        ("huge.jpg", sized(JPEG, 6 * 1024 * 1024), "at most 5242880 bytes"),
    ],
)
def test_files_that_are_not_what_a_message_may_carry_are_refused_on_file(
    cast: Cast, name: str, content: bytes, message: str
) -> None:
    response = upload(cast, name, content)
    assert response.status_code == 400, response.content
    assert any(message in m for m in response.json()["file"]), response.json()
    assert not Media.objects.exists()


def test_a_30_mib_upload_is_refused_before_it_is_read(cast: Cast) -> None:
    response = upload(cast, "video.mp4", sized(b"\x00\x00\x00\x18ftypmp42", 30 * 1024 * 1024))
    assert response.status_code == 400, response.content
    assert "larger than 16777216 bytes" in response.json()["file"][0]
    assert not Media.objects.exists()


def test_an_upload_without_a_file_says_where_it_goes(cast: Cast) -> None:
    response = cast.owner.post("/api/v1/media", {"filename": "x"}, format="multipart")
    assert response.status_code == 400
    assert "multipart field 'file'" in response.json()["file"][0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8000/secret.png", "must point to a public address"),
        ("http://10.0.0.7/x.png", "must point to a public address"),
        ("http://localhost/x.png", "must point to a public address"),
        ("ftp://example.com/x.png", "http:// or https://"),
        ("http://user:pw@example.com/x.png", "user name or password"),
    ],
)
def test_urls_inside_or_of_the_wrong_form_are_refused_on_url(cast: Cast, url: str, message: str) -> None:
    response = cast.owner.post("/api/v1/media", {"url": url}, format="json")
    assert response.status_code == 400, response.content
    assert any(message in m for m in response.json()["url"]), response.json()
    assert not Media.objects.exists()


@pytest.fixture
def file_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving a PDF at /doc.pdf, a redirect at /moved, 404 elsewhere."""
    with serve_files({"/doc.pdf": sized(PDF, 10_000)}, redirects={"/moved": "/doc.pdf"}) as base:
        yield base


def test_a_url_is_fetched_once_where_private_addresses_are_allowed(cast: Cast, settings: Any, file_server: str) -> None:
    settings.BLAST_MEDIA_FETCH_PRIVATE = True
    response = cast.owner.post("/api/v1/media", {"url": f"{file_server}/doc.pdf"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["filename"], body["size"]) == ("document", "doc.pdf", 10_000)
    assert body["source_url"] == f"{file_server}/doc.pdf"
    for path, message in (("/missing.pdf", "answered 404"), ("/moved", "a redirect")):
        refused = cast.owner.post("/api/v1/media", {"url": file_server + path}, format="json")
        assert refused.status_code == 400
        assert message in refused.json()["url"][0]
    # Without the setting the same server is inside: refused.
    settings.BLAST_MEDIA_FETCH_PRIVATE = False
    inside = cast.owner.post("/api/v1/media", {"url": f"{file_server}/doc.pdf"}, format="json")
    assert inside.status_code == 400
    assert Media.objects.count() == 1


def test_another_tenants_media_is_a_404_and_cannot_be_sent(cast: Cast) -> None:
    media_id = upload(cast, "a.png", sized(PNG, 1000)).json()["id"]
    rival = cast.client(cast.key_b)
    assert rival.get(f"/api/v1/media/{media_id}").status_code == 404
    assert rival.delete(f"/api/v1/media/{media_id}").status_code == 404
    assert rival.get("/api/v1/media").json()["results"] == []
    sent = rival.post(f"/api/v1/instances/{cast.instance_b.key}/messages", {"to": TO, "media": media_id}, format="json")
    assert sent.status_code == 400
    assert sent.json()["media"] == [f"No media with id {media_id}."]
    assert cast.owner.get("/api/v1/media/not-a-uuid").status_code == 404


def test_a_message_carries_a_media_and_its_caption(cast: Cast) -> None:
    media_id = upload(cast, "a.png", sized(PNG, 1000)).json()["id"]
    url = f"/api/v1/instances/{cast.instance_a.key}/messages"
    response = cast.owner.post(url, {"to": TO, "media": media_id, "text": "Our catalogue"}, format="json")
    assert response.status_code == 202, response.content
    assert (response.json()["media"], response.json()["text"]) == (media_id, "Our catalogue")
    bare = cast.owner.post(url, {"to": TO, "media": media_id}, format="json")
    assert bare.status_code == 202 and bare.json()["text"] == ""
    long = cast.owner.post(url, {"to": TO, "media": media_id, "text": "x" * 1025}, format="json")
    assert long.status_code == 400 and "at most 1024" in long.json()["text"][0]
    nothing = cast.owner.post(url, {"to": TO}, format="json")
    assert nothing.status_code == 400 and nothing.json()["text"] == ["This field is required."]
    batch = cast.owner.post(
        "/api/v1/messages/batch",
        {
            "messages": [
                {"instance": str(cast.instance_a.key), "to": TO, "media": media_id},
                {"instance": str(cast.instance_a.key), "to": TO, "media": "5f0e7b8e-95d4-4a8a-9d44-3e0f0c1d2e3f"},
            ]
        },
        format="json",
    )
    assert batch.status_code == 400
    assert batch.json()["messages"][0] == {} and "No media with id" in batch.json()["messages"][1]["media"][0]
    assert Message.objects.filter(media__key=media_id).count() == 2


def test_a_media_named_by_messages_is_kept_and_one_that_is_not_is_deleted(cast: Cast, media_root: Any) -> None:
    used = upload(cast, "a.png", sized(PNG, 1000)).json()["id"]
    cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/messages", {"to": TO, "media": used}, format="json")
    assert cast.owner.delete(f"/api/v1/media/{used}").status_code == 409
    unused = upload(cast, "b.png", sized(PNG, 1000)).json()["id"]
    path = media_root / Media.objects.get(key=unused).file.name
    assert path.exists()
    assert cast.owner.delete(f"/api/v1/media/{unused}").status_code == 204
    assert not path.exists() and not Media.objects.filter(key=unused).exists()


def test_a_signed_link_serves_the_file_until_it_expires(cast: Cast, settings: Any, client: Any) -> None:
    content = sized(JPEG, 5000)
    media = Media.objects.get(key=upload(cast, "p.jpg", content).json()["id"])
    link = links.url(media.pk)
    assert link.startswith(settings.BLAST_PUBLIC_URL.rstrip("/") + "/m/")
    path = link[len(settings.BLAST_PUBLIC_URL.rstrip("/")) :]
    answer = client.get(path)
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == content
    assert answer["Content-Type"] == "image/jpeg" and answer["Cache-Control"] == "private, no-store"
    media.refresh_from_db()
    assert (media.fetches, media.bytes_served) == (1, 5000)
    # No credentials needed, and none accepted instead of the signature.
    assert client.get(path[:-3] + "abc").status_code == 404
    assert client.get("/m/" + links.token(media.pk + 1000)).status_code == 404
    with _later(settings):
        assert client.get(path).status_code == 410


def _later(settings: Any) -> Any:
    import datetime as dt

    return time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=settings.BLAST_MEDIA_LINK_TTL_S + 5))
