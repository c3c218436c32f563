from django.apps import AppConfig


class EngineConfig(AppConfig):
    """The connection worker: it has no models of its own and sits above the
    domain apps (instances, monitoring, api, campaigns), whose models it drives."""

    name = "engine"
    verbose_name = "Connection engine"
