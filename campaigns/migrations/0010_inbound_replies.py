import uuid

import django.db.models.deletion
from django.db import migrations, models


def give_keys(apps, schema_editor):
    InboundMessage = apps.get_model("campaigns", "InboundMessage")
    for row in InboundMessage.objects.filter(key__isnull=True).only("id").iterator():
        InboundMessage.objects.filter(pk=row.pk).update(key=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0009_message_media"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboundmessage",
            name="key",
            field=models.UUIDField(editable=False, null=True, verbose_name="public id"),
        ),
        migrations.RunPython(give_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="inboundmessage",
            name="key",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True, verbose_name="public id"),
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="in_reply_to",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="replies",
                to="campaigns.message",
            ),
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="campaign",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="replies",
                to="campaigns.campaign",
            ),
        ),
        migrations.AddIndex(
            model_name="inboundmessage",
            index=models.Index(fields=["instance", "sender", "-received_at"], name="inbound_conversation"),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["to", "instance"], name="message_recipient"),
        ),
        # Webhooks that exist already are not sent a new kind of event unasked.
        migrations.AddField(
            model_name="tenantwebhook",
            name="inbound_events",
            field=models.BooleanField(default=False, help_text="Messages the instances received."),
        ),
        migrations.AlterField(
            model_name="tenantwebhook",
            name="inbound_events",
            field=models.BooleanField(default=True, help_text="Messages the instances received."),
        ),
    ]
