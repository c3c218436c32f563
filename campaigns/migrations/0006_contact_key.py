"""Contacts get a public id (a UUID), as every other object of the API has.

Added empty here, filled for the existing rows by 0007 and made unique and
required by 0008: three steps, so that PostgreSQL never alters the table in
the transaction that updated its rows.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0005_tenantwebhook_url_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="contact",
            name="key",
            field=models.UUIDField(editable=False, null=True, verbose_name="public id"),
        ),
    ]
