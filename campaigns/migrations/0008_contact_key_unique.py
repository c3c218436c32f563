"""Contacts' public ids are required and unique (the unique index serves the
API's lookups by id)."""

import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_contact_key_fill"),
    ]

    operations = [
        migrations.AlterField(
            model_name="contact",
            name="key",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True, verbose_name="public id"),
        ),
    ]
