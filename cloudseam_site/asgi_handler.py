"""Django's ASGI handler with the middleware chain and the view run in one worker-thread hop.

Every view and most middleware here are synchronous. Built for async, Django's chain crosses between
the event loop and a worker thread twice for every `MiddlewareMixin` (its `process_request` and
`process_response` each run through `sync_to_async`) and again around each sync-only middleware:
about fifteen crossings per request, which cost more than the view itself (issue #10, P3). Built for
sync, as under WSGI, the chain runs straight through in one thread.

That thread comes from a pool kept for the life of the process. Django's own handler starts a new
thread for every request (its ThreadSensitiveContext) and joins it at the end; that was a tenth of
a POST /api/events. Without that context, Django's request signals and `response.close()` run on
asgiref's one shared thread; they only close that thread's connections, so the chain closes the
connections it used itself, as `request_finished` would (with the pool: gives them back).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse

# Concurrent requests per process. More than the database pool on purpose: a request beyond the
# pool still waits CLOUDSEAM_DB_POOL_TIMEOUT for a connection and is answered 503, as before.
REQUEST_THREADS = 64


class OneHopASGIHandler(ASGIHandler):
    executor = ThreadPoolExecutor(max_workers=REQUEST_THREADS, thread_name_prefix="cloudseam-request")

    def load_middleware(self, is_async: bool = False) -> None:  # noqa: ARG002 - always the sync chain
        super().load_middleware(is_async=False)
        chain = self._middleware_chain

        def respond(request: HttpRequest) -> HttpResponse:
            try:
                return chain(request)
            finally:
                close_old_connections()

        self._middleware_chain = sync_to_async(respond, thread_sensitive=False, executor=self.executor)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)
