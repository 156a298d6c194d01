"""ASGI entry point: HTTP through Django, WebSockets through Channels (DESIGN §6.4)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudseam_site.settings")
django.setup(set_prefix=False)

from cloudseam_site.asgi_handler import OneHopASGIHandler  # noqa: E402 - Django must be set up first

django_asgi_app = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cloudseam_site.accounts.auth import BearerTokenMiddleware  # noqa: E402
from stacks.live.routing import websocket_urlpatterns  # noqa: E402


class OriginOrTokenValidator:
    """Browsers always send Origin with a WebSocket, so a socket without one is no cross-site page:
    such a client (a CLI, a script) is let through without the origin check, but with its cookies
    removed — it must authenticate with a bearer token. Everything else must come from our hosts.
    """

    def __init__(self, inner):
        self.inner = inner
        self.checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope, receive, send):
        names = {name for name, _ in scope.get("headers", [])}
        if b"origin" not in names and b"authorization" in names:
            headers = [(name, value) for name, value in scope["headers"] if name != b"cookie"]
            return await self.inner({**scope, "headers": headers}, receive, send)
        return await self.checked(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginOrTokenValidator(
            AuthMiddlewareStack(BearerTokenMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
