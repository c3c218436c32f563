"""A public id for every existing contact, in batches of bounded size."""

import uuid

from django.db import migrations

BATCH = 1000


def fill_keys(apps, schema_editor):
    Contact = apps.get_model("campaigns", "Contact")
    db = schema_editor.connection.alias
    while True:
        batch = list(Contact.objects.using(db).filter(key__isnull=True).order_by("id").only("id")[:BATCH])
        if not batch:
            return
        for contact in batch:
            contact.key = uuid.uuid4()
        Contact.objects.using(db).bulk_update(batch, ["key"])


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_contact_key"),
    ]

    operations = [
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
    ]
