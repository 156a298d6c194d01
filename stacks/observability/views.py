"""/healthz, /readyz and /metrics: no login page, no CSRF, answers made for machines."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from stacks.observability import access, health, metrics


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


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = access.refusal(request)
    if refused is not None:
        status, sentence = refused
        response = HttpResponse(sentence + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="cloudseam"'
        return response
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
