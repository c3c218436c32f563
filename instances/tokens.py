"""Encryption at rest for per-instance gateway tokens.

Tokens must be sent to the gateway, so they cannot be hashed; they are
encrypted with Fernet under a key derived from ``BLAST_TOKEN_KEY`` (or, when
unset, ``SECRET_KEY``).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet
from django.conf import settings


@cache
def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(("blast.instances.tokens:" + secret).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _current() -> Fernet:
    return _fernet(settings.BLAST_TOKEN_KEY or settings.SECRET_KEY)


def encrypt(token: str) -> str:
    return _current().encrypt(token.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _current().decrypt(ciphertext.encode()).decode()
