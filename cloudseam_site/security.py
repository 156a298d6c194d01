"""A Content-Security-Policy for CloudSeam's own pages: scripts only from our static files.

Escaping is the first defence against a metadata value like `<img src=x onerror=…>`; this header is
the second: even an injected tag could run no inline script and reach no other origin. The Django
admin and django-rq pages keep their own behaviour (they are not written for a strict policy).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",  # the in-browser Graphviz fallback is WebAssembly
        "style-src 'self' 'unsafe-inline'",  # Mermaid and Graphviz SVGs carry style attributes
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
EXEMPT_PREFIXES = ("/admin/",)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


class RejectNulMiddleware:
    """A NUL character in a path or query string is refused before any view sees it.

    PostgreSQL cannot store or compare text holding NUL; without this, a `?q=%00` would reach the
    database driver and fail with a 500 instead of a clear 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return JsonResponse({"error": "the address contains a NUL character (%00), which is never valid here"},
                                status=400)
        return self.get_response(request)
