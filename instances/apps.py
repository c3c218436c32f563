from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"
    verbose_name = "Instances"

    def ready(self) -> None:
        # The admin has loaded every app's admin module by now (its own
        # ready() runs first: INSTALLED_APPS lists it before this app).
        from instances.admin import confine_unscoped_admins

        confine_unscoped_admins()
