"""The group that marks staff users as the platform's operators.

A staff user sees every tenant in the admin and the dashboard only as a
superuser or as a member of this group (``instances.models.access_of``). The
group carries no permissions of its own: what an operator may do still comes
from their permissions (or ones an administrator adds to the group).
"""

from django.db import migrations

NAME = "Platform operators"


def create(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=NAME)


def remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("instances", "0005_message_sweep_schedule"),
    ]

    operations = [migrations.RunPython(create, remove)]
