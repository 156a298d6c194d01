"""Who is asking: a browser session or an `Authorization: Bearer` token, for HTTP and WebSockets."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from cloudseam_site.accounts.tokens import bearer_from_header, find_token


def authenticate_bearer(request) -> None:
    """Attach a token's user to the request when it carries a valid bearer token.

    An invalid token is not silently ignored: `request.bad_token` makes the API answer 401 even
    when a session cookie is also present.
    """
    raw = bearer_from_header(request.headers.get("Authorization"))
    request.api_token = None
    request.bad_token = False
    if raw is None:
        if request.headers.get("Authorization"):
            request.bad_token = True
        return
    token = find_token(raw)
    if token is None:
        request.bad_token = True
        return
    request.api_token = token
    request.user = token.user


class BearerTokenMiddleware(BaseMiddleware):
    """WebSocket scopes: a valid bearer token replaces the (session) user."""

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        raw_header = headers.get(b"authorization")
        if raw_header:
            raw = bearer_from_header(raw_header.decode("latin-1"))
            token = await database_sync_to_async(find_token)(raw) if raw else None
            scope = dict(scope)
            if token is None:
                scope["user"] = AnonymousUser()
                scope["api_token"] = None
            else:
                scope["user"] = token.user
                scope["api_token"] = token
        return await super().__call__(scope, receive, send)
