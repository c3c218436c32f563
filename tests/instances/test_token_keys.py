"""Token keys: separate from SECRET_KEY, rotated without downtime."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError

from instances import tokens
from instances.models import Gateway, Instance, Tenant

OLD, NEW = "old-token-key-" + "o" * 30, "new-token-key-" + "n" * 30


def test_the_first_key_encrypts_and_every_key_decrypts(settings: Any) -> None:
    settings.BLAST_TOKEN_KEY = [OLD]
    under_old = tokens.encrypt("gateway-token")
    settings.BLAST_TOKEN_KEY = [NEW, OLD]
    under_new = tokens.encrypt("gateway-token")
    assert tokens.decrypt(under_old) == tokens.decrypt(under_new) == "gateway-token"
    settings.BLAST_TOKEN_KEY = [NEW]
    assert tokens.decrypt(under_new) == "gateway-token"
    with pytest.raises(InvalidToken):
        tokens.decrypt(under_old)


def test_secret_key_alone_does_not_decrypt_what_the_token_key_wrote(settings: Any) -> None:
    settings.BLAST_TOKEN_KEY = [NEW]
    stored = tokens.encrypt("gateway-token")
    settings.BLAST_TOKEN_KEY = ["an-unrelated-key-" + "x" * 30]
    with pytest.raises(InvalidToken):
        tokens.decrypt(stored)


@pytest.mark.django_db
def test_rotate_token_key_moves_every_stored_secret_to_the_new_key(settings: Any) -> None:
    settings.BLAST_TOKEN_KEY = [OLD]
    tenant = Tenant.objects.create(slug="rot", name="Rotation")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:1")
    instance = Instance.objects.create(tenant=tenant, name="one", gateway=gateway)
    token = instance.token
    settings.BLAST_TOKEN_KEY = [NEW, OLD]
    out = StringIO()
    call_command("rotate_token_key", stdout=out)
    assert "instances.Instance.token_encrypted: 1 re-encrypted" in out.getvalue()
    settings.BLAST_TOKEN_KEY = [NEW]
    assert Instance.objects.get(pk=instance.pk).token == token
    again = StringIO()
    call_command("rotate_token_key", stdout=again)
    assert "instances.Instance.token_encrypted: 0 re-encrypted" in again.getvalue()


@pytest.mark.django_db
def test_rotate_token_key_names_values_no_key_opens(settings: Any) -> None:
    settings.BLAST_TOKEN_KEY = [OLD]
    tenant = Tenant.objects.create(slug="lost", name="Lost")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:1")
    Instance.objects.create(tenant=tenant, name="one", gateway=gateway)
    settings.BLAST_TOKEN_KEY = [NEW]
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_token_key", stdout=StringIO())
