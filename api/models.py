"""API keys: how tenants reach the REST API.

A key reads ``blast_<prefix>_<secret>``. The prefix (12 hex digits) is
stored in clear to find the row; only the SHA-256 of the whole key is
stored, so the database never holds a usable key. The secret carries 256
random bits, which is why a fast hash is enough (as for GitHub's or Stripe's
tokens): there is nothing to brute-force. A key is shown once, when it is
created, and never again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from instances.models import Tenant

KEY_PREFIX = "blast"
PREFIX_HEX_DIGITS = 12


def hash_key(raw: str) -> str:
    """The stored form of a key: hex SHA-256 of the whole key text."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, or None for anything else."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != PREFIX_HEX_DIGITS or any(c not in "0123456789abcdef" for c in prefix):
        return None
    if not 20 <= len(secret) <= 200:
        return None
    return prefix, secret


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKeyManager(models.Manager["ApiKey"]):
    def get_queryset(self) -> ApiKeyQuerySet:
        return ApiKeyQuerySet(self.model, using=self._db)

    def active(self) -> ApiKeyQuerySet:
        return self.get_queryset().active()

    def create_key(self, tenant: Tenant, name: str, created_by: str = "") -> tuple[ApiKey, str]:
        """Create a key; return the row and the raw key (the only time it exists in clear).

        Raises ``IntegrityError`` when the tenant already has an active key of
        that name. A prefix collision (48 random bits) is retried.
        """
        for _attempt in range(5):
            prefix = secrets.token_hex(PREFIX_HEX_DIGITS // 2)
            raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
            try:
                with transaction.atomic():
                    key = self.create(
                        tenant=tenant,
                        name=name,
                        prefix=prefix,
                        key_hash=hash_key(raw),
                        created_by=created_by,
                    )
            except IntegrityError:
                if self.filter(prefix=prefix).exists():
                    continue
                raise
            return key, raw
        raise IntegrityError("could not find a free API key prefix")  # pragma: no cover


class ApiKey(models.Model):
    """A named, revocable credential of one tenant. Several per tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. 'crm-sync'.")
    prefix = models.CharField(max_length=PREFIX_HEX_DIGITS, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=200, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyManager()

    class Meta:
        verbose_name = "API key"
        ordering = ["tenant", "name", "-created_at"]
        constraints = [
            # A revoked key frees its name for a successor.
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=Q(revoked_at__isnull=True),
                name="apikey_active_name_unique_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix})"

    @property
    def display_prefix(self) -> str:
        """The part of the key that may be shown: enough to recognise it, useless to use."""
        return f"{KEY_PREFIX}_{self.prefix}_…"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def actor(self) -> str:
        """How the audit log (``ConnectionEvent.actor``) names this key."""
        return f"api-key:{self.pk}:{self.name}"

    def matches(self, raw: str) -> bool:
        """Whether ``raw`` is this key (constant-time comparison)."""
        return hmac.compare_digest(self.key_hash, hash_key(raw))

    def revoke(self) -> bool:
        """Revoke the key; return False if it already was. Conditional update, no read-modify-write."""
        now = timezone.now()
        done = ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
        if done:
            self.revoked_at = now
        return done

    def touch(self, now: dt.datetime, interval_s: float) -> None:
        """Record a use, writing at most once per ``interval_s`` per key.

        The check on the loaded row skips the query on most requests; the
        conditional UPDATE keeps concurrent requests from writing twice.
        """
        if self.last_used_at is not None and (now - self.last_used_at).total_seconds() < interval_s:
            return
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - dt.timedelta(seconds=interval_s))
        ApiKey.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now
