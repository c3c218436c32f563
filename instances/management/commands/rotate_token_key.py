"""`manage.py rotate_token_key`: re-encrypt stored secrets under the first token key.

The rotation (docs/OPERATIONS.md, "Security"): set ``BLAST_TOKEN_KEY`` to
``new,old`` on every process, run this command, then set it to ``new``
alone. Values already under the first key are left alone, so the command
can be run again at any time; it also moves values written under the old
``SECRET_KEY``-derived key onto the token key.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from instances import tokens


class Command(BaseCommand):
    help = "Re-encrypt instance tokens and webhook secrets under the first key of BLAST_TOKEN_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        unreadable_total = 0
        for column, rewritten, unreadable in tokens.rotate_all():
            unreadable_total += unreadable
            line = f"{column}: {rewritten} re-encrypted"
            if unreadable:
                line += f", {unreadable} that no configured key opens"
            self.stdout.write(line)
        if unreadable_total:
            raise CommandError(
                f"{unreadable_total} stored values could not be decrypted with any key of BLAST_TOKEN_KEY: "
                "add the key they were written with to the list and run the command again."
            )
