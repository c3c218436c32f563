"""ASGI entry point: HTTP through Django, browser WebSockets through Channels.

Browser WebSockets (the live dashboard) go through the session and auth
middleware, so consumers see ``scope["user"]``, and accept only the site's
own Origin (scheme, host and port of the Host the browser connected to, see
blast/origins.py) or one in CSRF_TRUSTED_ORIGINS, so another site's page, on
another host or only another port, cannot open one with the user's cookies.
"""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blast.settings")

django_asgi_app = get_asgi_application()

from blast.origins import SameOriginValidator  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402  (needs the apps loaded)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
