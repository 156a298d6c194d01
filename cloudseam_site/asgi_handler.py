"""Django's ASGI handler with the middleware chain and the view run in one worker-thread hop.

Every view and most middleware here are synchronous. Built for async, Django's chain crosses between
the event loop and a worker thread twice for every `MiddlewareMixin` (its `process_request` and
`process_response` each run through `sync_to_async`) and again around each sync-only middleware:
about fifteen crossings per request, which cost more than the view itself (issue #10, P3). Built for
sync, as under WSGI, the chain runs straight through in the thread that also runs the view.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneHopASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:  # noqa: ARG002 - always the sync chain
        super().load_middleware(is_async=False)
        # thread_sensitive=True: Django's ThreadSensitiveContext gives each request its own thread,
        # and the database connection the view opened is the one `response.close()` gives back.
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)
