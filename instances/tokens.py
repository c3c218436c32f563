"""Encryption at rest for gateway tokens and webhook secrets.

They must be sent on (to the gateway, or as a signing key), so they cannot
be hashed; they are encrypted with Fernet under keys of their own,
``BLAST_TOKEN_KEY``: a list whose first key encrypts and whose every key
decrypts, so that keys can be rotated without downtime (put the new key
first, run ``manage.py rotate_token_key``, then drop the old key).

Values written before the token keys existed were encrypted under a key
derived from ``SECRET_KEY`` (or from the public development key); those keys
still decrypt, and ``rotate_token_key`` re-encrypts such values under the
current token key, after which ``SECRET_KEY`` decrypts nothing stored.

Models register their encrypted columns with :func:`register`, so that the
rotation finds every one without this module knowing the apps above it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models, transaction

_ENCRYPTED: list[tuple[type[models.Model], str]] = []


def register(model: type[models.Model], field: str) -> None:
    """Declare ``model.field`` as holding a value of :func:`encrypt`."""
    if (model, field) not in _ENCRYPTED:
        _ENCRYPTED.append((model, field))


def encrypted_columns() -> list[tuple[type[models.Model], str]]:
    return list(_ENCRYPTED)


@cache
def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(("blast.instances.tokens:" + secret).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _secrets() -> list[str]:
    """The token keys in order, then the legacy keys that only decrypt."""
    keys = [str(key) for key in settings.BLAST_TOKEN_KEY if str(key)]
    legacy = [settings.SECRET_KEY, getattr(settings, "DEVELOPMENT_SECRET_KEY", "")]
    return list(dict.fromkeys([*keys, *(key for key in legacy if key)]))


@cache
def _multi(secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(secret) for secret in secrets])


def _current() -> MultiFernet:
    return _multi(tuple(_secrets()))


def encrypt(token: str) -> str:
    return _current().encrypt(token.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """The plain value; ``cryptography.fernet.InvalidToken`` when no key opens it."""
    return _current().decrypt(ciphertext.encode()).decode()


def rotate(ciphertext: str) -> str:
    """``ciphertext`` re-encrypted under the first token key."""
    return _current().rotate(ciphertext.encode()).decode()


def needs_rotation(ciphertext: str) -> bool:
    """True when the first token key does not open ``ciphertext``."""
    try:
        _fernet(_secrets()[0]).decrypt(ciphertext.encode())
    except InvalidToken:
        return True
    return False


def rotate_all(batch: int = 500) -> Iterator[tuple[str, int, int]]:
    """Re-encrypt every registered column under the first token key.

    Yields (``app_label.Model.field``, rows rewritten, rows no key opens) per
    column. Rows already under the first key are left alone, so a second
    run rewrites nothing. Each batch is one transaction.
    """
    for model, field in encrypted_columns():
        rewritten = unreadable = 0
        rows = model._default_manager.exclude(**{field: ""}).values_list("pk", field).order_by("pk")
        last = None
        while True:
            page = rows if last is None else rows.filter(pk__gt=last)
            chunk = list(page[:batch])
            if not chunk:
                break
            last = chunk[-1][0]
            with transaction.atomic():
                for pk, value in chunk:
                    if not needs_rotation(value):
                        continue
                    try:
                        new = rotate(value)
                    except InvalidToken:
                        unreadable += 1
                        continue
                    model._default_manager.filter(pk=pk, **{field: value}).update(**{field: new})
                    rewritten += 1
        yield f"{model._meta.label}.{field}", rewritten, unreadable
