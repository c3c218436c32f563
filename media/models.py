"""A tenant's files to send: images, documents, audio and video.

Stored through Django's storage API (``STORAGES["media"]``: the filesystem
under ``BLAST_MEDIA_ROOT`` by default, S3-compatible storage when
``BLAST_MEDIA_S3_BUCKET`` is set). The stored name is the tenant and the
media's public id, never the name the file came with; that name is kept to
show it and to send documents under it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver
from django.utils import timezone
from django.utils.functional import LazyObject, empty

from instances.models import Tenant
from media.kinds import Kind


class _MediaStorage(LazyObject):
    """``STORAGES["media"]``, looked up when first used and again after the
    setting changes (as Django's ``default_storage`` does)."""

    def _setup(self) -> None:
        self._wrapped = storages["media"]


media_storage = _MediaStorage()


@receiver(setting_changed)
def _storages_changed(setting: str, **kwargs: Any) -> None:
    if setting == "STORAGES":
        media_storage._wrapped = empty


def _storage() -> Any:
    return media_storage


def _stored_name(media: Media, filename: str) -> str:
    return f"{media.tenant_id}/{media.key.hex}"


class Media(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="media")
    key = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=[(k.value, k.value.title()) for k in Kind])
    mime = models.CharField("type", max_length=100, help_text="sniffed from the content")
    filename = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(help_text="bytes")
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=_stored_name, storage=_storage, max_length=200)
    source_url = models.URLField(max_length=2048, blank=True, help_text="fetched once from here")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    fetches = models.PositiveIntegerField(default=0, help_text="times a gateway fetched it")
    bytes_served = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "media"
        indexes = [models.Index(fields=["tenant", "-created_at"], name="media_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.filename} ({self.kind}, {self.size} bytes)"
