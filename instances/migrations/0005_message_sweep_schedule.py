"""Created the due-messages sweep's schedule; now empty.

Every beat job is in the registry ``instances.schedules`` and created after
``migrate`` by its ``post_migrate`` sync, which leaves existing rows (and an
operator's edits of them) alone. The migration stays so that databases that
applied it and the migrations depending on it keep a valid history.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("instances", "0004_sending_policy")]

    operations: list[migrations.operations.base.Operation] = []
