"""ASGI entry point: HTTP through Django, WebSockets through Channels (DESIGN §6.4)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudseam_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cloudseam_site.routing import websocket_urlpatterns  # noqa: E402
from stacks.auth import BearerTokenMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(BearerTokenMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
