"""Alert webhook URLs are checked against the outbound address policy
(monitoring.outbound) when saved; no data changes."""

import django.core.validators
from django.db import migrations, models

import monitoring.outbound


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_monitoring_schedules"),
    ]

    operations = [
        migrations.AlterField(
            model_name="alertwebhook",
            name="url",
            field=models.CharField(
                help_text="http:// or https://, on a public address.",
                max_length=500,
                validators=[
                    django.core.validators.URLValidator(
                        message="Enter an http:// or https:// URL.", schemes=["http", "https"]
                    ),
                    monitoring.outbound.validate_public_url,
                ],
                verbose_name="URL",
            ),
        ),
    ]
