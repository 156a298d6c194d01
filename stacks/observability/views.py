"""/healthz, /readyz and /metrics: no login page, no CSRF, answers made for machines."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from stacks.observability import access, health, metrics
from stacks.observability.connections import describe_error

log = logging.getLogger(__name__)


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests; nothing else is checked (restarting would not help)."""
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """503 with the failing part named while the database, Redis or every worker is away."""
    checks = health.run_checks()
    ready = all(result == health.OK for result in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _text(sentence: str, status: int) -> HttpResponse:
    response = HttpResponse(sentence + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="cloudseam"'
    return response


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    try:
        refused = access.refusal(request)
    except Exception as exc:  # noqa: BLE001 - a token cannot be checked without the database: say so, no 500
        log.warning("metrics: could not check who is asking", exc_info=True)
        return _text(f"Cannot check this request's token now: {describe_error(exc)}", 503)
    if refused is not None:
        return _text(refused[1], refused[0])
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
