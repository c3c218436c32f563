"""Media end to end, with real processes: the web process that serves the
signed links, a connection worker, the simulator (which fetches each link
before it acks, as a gateway does), the real Redis and database.

An image and a PDF sent through the API arrive at the gateway with the
right metadata and a link that works; a gateway that announced no v1.1
feature is never sent a media frame: the message fails with its reason.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from api.models import ApiKey
from campaigns.models import Message, MessageStatus
from instances.models import Gateway, Status, Tenant
from media.models import Media
from tests.campaigns.conftest import URLS
from tests.fixtures.engine import Engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.simulator import gateway_sim_args
from tests.media.conftest import PDF, PNG, sized

pytestmark = pytest.mark.urls(URLS)

TO = "+5511999990001"


@pytest.fixture
def stack(platform: Platform, gateway_sim: Any, media_root: Path) -> Iterator[tuple[Engine, APIClient]]:
    """The web process first (gateways reach the files there), then the worker."""
    platform.env["BLAST_MEDIA_ROOT"] = str(media_root)
    _, base = platform.start_web()
    platform.env["BLAST_PUBLIC_URL"] = base
    gateway = Gateway.objects.create(name="simulator", url=gateway_sim.url)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    engine = Engine(platform=platform, sim=gateway_sim, gateway=gateway, tenant=tenant)
    engine.workers.append(platform.start_worker())
    _, key = ApiKey.objects.create_key(tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    yield engine, client
    engine.assert_worker_clean()


def _upload(client: APIClient, name: str, content: bytes) -> str:
    response = client.post("/api/v1/media", {"file": SimpleUploadedFile(name, content)}, format="multipart")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _send(client: APIClient, instance: Any, **body: Any) -> Message:
    response = client.post(f"/api/v1/instances/{instance.key}/messages", {"to": TO, **body}, format="json")
    assert response.status_code == 202, response.content
    return Message.objects.get(key=response.json()["id"])


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_an_image_and_a_pdf_reach_the_gateway_with_their_metadata_and_a_working_link(
    stack: tuple[Engine, APIClient],
) -> None:
    engine, client = stack
    instance = engine.create("shop")
    engine.wait_status(instance, Status.CONNECTED)
    image = sized(PNG, 200 * 1024)
    pdf = sized(PDF, 50_000)
    photo = _send(client, instance, media=_upload(client, "catalogue.png", image), text="New this week")
    invoice = _send(client, instance, media=_upload(client, "invoice-42.pdf", pdf))
    for message in (photo, invoice):
        wait_until(
            lambda message=message: Message.objects.get(pk=message.pk).status == MessageStatus.READ,
            timeout=30,
            message=f"{message.key} read ({Message.objects.filter(pk=message.pk).values()}, "
            f"{engine.sim_stats(instance)})\n{engine.sim.log()[-2000:]}\n{engine.platform.logs()[-3000:]}",
        )
    sent = engine.sim_stats(instance)["media"]
    assert sent[photo.client_id] | {"url": ""} == {
        "kind": "image",
        "mime": "image/png",
        "filename": "catalogue.png",
        "size": len(image),
        "url": "",
        "caption": "New this week",
        "fetched_bytes": len(image),
    }
    assert sent[invoice.client_id]["kind"] == "document"
    assert sent[invoice.client_id]["filename"] == "invoice-42.pdf"
    assert sent[invoice.client_id]["caption"] == ""
    assert sent[invoice.client_id]["fetched_bytes"] == len(pdf)
    # Each was fetched once by the gateway, and the link still works for anyone holding it.
    assert sorted(Media.objects.values_list("fetches", flat=True)) == [1, 1]
    with urllib.request.urlopen(sent[invoice.client_id]["url"], timeout=10) as answer:
        assert answer.read() == pdf
    assert engine.sim.control.stats()["deliveries"] == {
        f"{instance.key}:{photo.client_id}": 1,
        f"{instance.key}:{invoice.client_id}": 1,
    }


@gateway_sim_args("--start-paired", "--receipt-delay", "0", "--v1", "--no-pair-code")
def test_a_gateway_that_announced_no_features_is_never_sent_a_media_frame(stack: tuple[Engine, APIClient]) -> None:
    engine, client = stack
    instance = engine.create("plain")
    engine.wait_status(instance, Status.CONNECTED)
    photo = _send(client, instance, media=_upload(client, "p.png", sized(PNG, 2000)), text="caption")
    text = _send(client, instance, text="plain text still goes")
    wait_until(lambda: Message.objects.get(pk=text.pk).status == MessageStatus.READ, timeout=30, message="text read")
    wait_until(lambda: Message.objects.get(pk=photo.pk).status == MessageStatus.FAILED, timeout=30, message="failed")
    photo.refresh_from_db()
    assert photo.failure_reason == "media_unsupported"
    assert "did not announce media" in photo.error
    stats = engine.sim_stats(instance)
    assert stats["media"] == {} and stats["accepted"] == 1
    assert engine.sim.control.stats()["deliveries"] == {f"{instance.key}:{text.client_id}": 1}
    assert Media.objects.get().fetches == 0
