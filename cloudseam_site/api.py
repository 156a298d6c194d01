"""What every JSON endpoint shares: authentication, roles, body checks and JSON errors.

Every refusal is `{"error": "<sentence>"}` with the right status; an endpoint never answers 500
for bad input, and an unexpected failure is logged and answered as JSON, not an HTML debug page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from cloudseam_site import strict_json
from cloudseam_site.accounts.auth import authenticate_bearer
from cloudseam_site.accounts.roles import RANK, request_role
from cloudseam_site.overload import is_overload, overloaded_response

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        self.status, self.message, self.extra = status, message, extra
        super().__init__(message)


def iso(value) -> str | None:
    """A datetime as ISO 8601 text for JSON answers, None when unset."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def read_body(request: HttpRequest, *, kind: str = "json") -> object:
    """The decoded body; `kind` is "json" or "yaml" (text). Size and content type are checked first."""
    length = request.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > settings.API_MAX_BODY:
        raise ApiError(413, f"the request body is larger than {settings.API_MAX_BODY // 1024} KiB")
    body = request.read(settings.API_MAX_BODY + 1)
    if len(body) > settings.API_MAX_BODY:
        raise ApiError(413, f"the request body is larger than {settings.API_MAX_BODY // 1024} KiB")
    content_type = request.content_type or ""
    if kind == "json":
        if content_type != "application/json":
            raise ApiError(415, f"send the body as application/json (got {content_type or 'no content type'})")
        return _decode_json(body)
    allowed = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
    if content_type not in allowed:
        raise ApiError(415, f"send the machine as application/yaml (got {content_type or 'no content type'})")
    return body


def _decode_json(body: bytes) -> object:
    """Strict JSON (no duplicate keys, no lone surrogates) or a 400 with a sentence."""
    try:
        return strict_json.loads(body.decode("utf-8"), "the request body")
    except strict_json.JsonInputError as exc:
        raise ApiError(400, exc.message) from None
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ApiError(400, f"the request body has a value CloudSeam cannot read: {str(exc)[:120]}") from None


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """Session-authenticated writes need Django's CSRF token; bearer-token requests do not."""
    if request.method in ("GET", "HEAD", "OPTIONS") or getattr(request, "api_token", None) is not None:
        return None
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    failure = check.process_view(request, None, (), {})
    if failure is not None:
        return error(403, "CSRF check failed: send the X-CSRFToken header with the page's CSRF token")
    return None


def api_endpoint(*, methods: tuple[str, ...], role: str | dict[str, str]) -> Callable:
    """Decorate a view returning a dict/list (200) or JsonResponse; `role` may vary by method."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"{request.method} is not allowed here; use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            needed = role[request.method] if isinstance(role, dict) else role
            refusal = _who_may_not(request, needed)
            if refusal is not None:
                return refusal
            try:
                result = view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message, **exc.extra)
            except Exception as exc:  # noqa: BLE001 - answer JSON, log the cause, never leak a traceback
                if is_overload(exc):
                    raise  # a 503 with Retry-After from cloudseam_site.overload, not a 500
                log.exception("API error in %s", request.path)
                return error(500, "CloudSeam failed to answer this request; the error was logged")
            return result if isinstance(result, HttpResponse) else JsonResponse(result, safe=False)

        return wrapper

    return decorate


def _who_may_not(request: HttpRequest, needed: str) -> HttpResponse | None:
    """Authenticate (token or session) and check the role; a refusal, or None to go ahead.

    Checking a token reads the database: when that fails the answer is JSON too (503), never a page.
    """
    try:
        authenticate_bearer(request) if request.headers.get("Authorization") else _no_token(request)
        return _refusal(request, needed) or _csrf_failure(request)
    except DatabaseError as exc:
        if is_overload(exc):  # a burst beyond the pool: the same 503 (with Retry-After) as everywhere
            return overloaded_response(request)
        log.exception("database error while checking who is asking for %s", request.path)
        response = error(503, "CloudSeam could not reach its database to check your credentials; try again shortly")
        response["Retry-After"] = "5"
        return response


def _no_token(request: HttpRequest) -> None:
    request.api_token = None
    request.bad_token = False


def _refusal(request: HttpRequest, needed: str) -> JsonResponse | None:
    if request.bad_token:
        return error(401, "the bearer token is not valid: it is unknown, revoked or expired")
    role = request_role(request)
    if role is None:
        if not request.user.is_authenticated:
            response = error(401, "authentication required: log in or send Authorization: Bearer <token>")
            response["WWW-Authenticate"] = 'Bearer realm="cloudseam"'
            return response
        return error(403, "your account has no CloudSeam role; ask an admin to give you one")
    if RANK[role] < RANK[needed]:
        return error(403, f"this needs the {needed} role; you have {role}")
    return None


def api_not_found(request: HttpRequest) -> JsonResponse:
    """JSON, not an HTML page, for a mistyped API path."""
    return error(404, f"there is no API endpoint {request.path[:200]}; see /api/openapi.json")
