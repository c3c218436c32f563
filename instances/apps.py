from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        # The admin has loaded every app's admin module by now (its own
        # ready() runs first: INSTALLED_APPS lists it before this app).
        from django.db.models.signals import post_migrate

        from instances.admin import confine_unscoped_admins
        from instances.schedules import sync_after_migrate

        confine_unscoped_admins()
        # Every beat job of the registry exists once the database is migrated.
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="instances.schedules.sync")
