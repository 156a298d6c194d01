"""The page that moves a machine's compatible stacks to its current version (stacks.upgrades).

GET shows which stacks on older versions could move and which would be stranded; POST moves the
compatible ones after the person typed their number, and shows what happened to each. The same
form sits on the machine page (templates/machines_app/_upgrade_panel.html). Scripts may ask for
JSON with `Accept: application/json`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from cloudseam_site.accounts.models import ROLE_OPERATOR
from cloudseam_site.accounts.roles import request_actor, role_required
from machines_app import in_flight
from machines_app.models import Machine
from stacks import upgrades
from stacks.pages.views import SOURCE, wants_json


def _page(request: HttpRequest, machine: Machine, status: int = 200, **context) -> HttpResponse:
    context = {"machine": machine, "upgrade": in_flight.pending_impact(machine), **context}
    return render(request, "stacks/machine_upgrade.html", context, status=status)


@role_required(ROLE_OPERATOR)
@require_http_methods(["GET", "HEAD", "POST"])
def move_stacks(request: HttpRequest, name: str) -> HttpResponse:
    """Move every stack the current version would not strand, confirmed by their number."""
    machine = get_object_or_404(Machine.objects.select_related("current_version"), name=name,
                                current_version__isnull=False)
    if request.method != "POST":
        return _page(request, machine)
    try:
        report = upgrades.move_compatible(machine, confirm=request.POST.get("confirm"),
                                          version=request.POST.get("version"), actor=request_actor(request),
                                          source=SOURCE)
    except upgrades.NotMoved as exc:
        if wants_json(request):
            return JsonResponse({"error": exc.message}, status=exc.status)
        return _page(request, machine, exc.status, error=exc.message)
    if wants_json(request):
        return JsonResponse(report.as_dict())
    return _page(request, machine, report=report)
