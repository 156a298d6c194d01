"""Answer 503 (not 500) when the database has no connection to spare, and say when to come back.

A burst beyond the connection pool waits up to CLOUDSEAM_DB_POOL_TIMEOUT seconds for a connection
(psycopg_pool.PoolTimeout), and a PostgreSQL server out of connection slots refuses new ones ("too
many clients already"). Either way the request could not be served *now*, nothing was changed, and
the service is fine again the moment the burst ends: API clients get JSON with `Retry-After`, pages a
short HTML page.
"""

from __future__ import annotations

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

RETRY_AFTER_SECONDS = 2
_REFUSALS = ("too many clients", "remaining connection slots are reserved", "couldn't get a connection")
PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>CloudSeam is busy</title>"
    "<h1>CloudSeam is busy</h1><p>Too many requests at once; please try again in a few seconds.</p></html>"
)


def is_overload(exc: BaseException) -> bool:
    """True for a pool timeout or a server out of connection slots (also when Django wrapped it)."""
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # SQLite-only installations
        PoolTimeout = ()  # noqa: N806
    for error in (exc, exc.__cause__):
        if PoolTimeout and isinstance(error, PoolTimeout):
            return True
        if isinstance(error, OperationalError | _psycopg_operational_error()):
            text = str(error).lower()
            if any(refusal in text for refusal in _REFUSALS):
                return True
    return False


def _psycopg_operational_error() -> type:
    try:
        import psycopg
    except ImportError:
        return OperationalError
    return psycopg.OperationalError


def overloaded_response(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"error": "CloudSeam is busy: no database connection was free in time; "
                      f"nothing was changed, try again in {RETRY_AFTER_SECONDS} s", "code": "overloaded"},
            status=503,
        )
    else:
        response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class OverloadMiddleware(MiddlewareMixin):
    """Turns a database overload raised by a view into a 503 (sync and async capable: no thread hop)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_overload(exception):
            return None
        return overloaded_response(request)
