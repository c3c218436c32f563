"""ASGI entry point: HTTP through Django, browser WebSockets through Channels.

Browser WebSockets (the live dashboard) go through the session and auth
middleware, so consumers see ``scope["user"]``, and accept only an Origin
among ALLOWED_HOSTS, so another site's page cannot open one with the
user's cookies.
"""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blast.settings")

django_asgi_app = get_asgi_application()

from monitoring.routing import websocket_urlpatterns  # noqa: E402  (needs the apps loaded)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
