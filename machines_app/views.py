"""Pages for machines: the list, a machine with its diagrams, YAML, versions and diff, the editor.

The Graphviz SVG is drawn on the server with `dot` and cached per machine version (and highlighted
state), because a layout costs a subprocess and versions never change. Without `dot` the page
carries the DOT text and the browser draws it (@viz-js/viz); Mermaid is always drawn in the browser.
Saving goes through `machines_app.services.save_machine`, the same door as the API and the folder.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from cloudseam_site.accounts.models import ROLE_ADMIN, ROLE_VIEWER
from cloudseam_site.accounts.roles import role_required
from machines_app import diagrams, in_flight, spec
from machines_app.diagram_context import diagram_context, machine_svg
from machines_app.forms import MachineForm
from machines_app.models import Machine, MachineVersion
from machines_app.services import InvalidMachine, save_machine

log = logging.getLogger(__name__)

SVG_CACHE_SECONDS = 24 * 3600
USAGE_SAMPLE = 10
EXPORTS = {
    "svg": ("image/svg+xml", "svg"),
    "dot": ("text/vnd.graphviz; charset=utf-8", "dot"),
    "mermaid": ("text/plain; charset=utf-8", "mmd"),
}
NEW_MACHINE_TEMPLATE = """version: 1

events:
  - LAUNCH
  - DESTROY

states:
  INIT:
    on:
      LAUNCH:
        - action: advance
          state: RUN

  RUN:
    on:
      DESTROY:
        - action: advance
          state: DESTROY

  DESTROY:
    terminal: true

tasks: {}
"""


# --- list and detail -------------------------------------------------------------------------------------


@role_required(ROLE_VIEWER)
@require_safe
def machine_list(request: HttpRequest) -> HttpResponse:
    machines = Machine.objects.select_related("current_version").annotate(
        active_stacks=Count("stacks", filter=Q(stacks__removed_at__isnull=True))
    )
    rows = [
        {"machine": m, "states": len(m.current_version.spec.states) if m.current_version else 0}
        for m in machines
    ]
    return render(request, "machines_app/machine_list.html", {"rows": rows})


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "file" or "same"
    text: str


def version_diff(old: MachineVersion, new: MachineVersion) -> list[DiffLine]:
    """A unified diff of two versions' YAML, each line tagged for colouring."""
    lines = difflib.unified_diff(
        old.yaml_text.splitlines(), new.yaml_text.splitlines(),
        f"version {old.number}", f"version {new.number}", lineterm="",
    )
    kinds = {"+++": "file", "---": "file", "@@": "hunk", "+": "add", "-": "del"}
    result = []
    for line in lines:
        kind = next((k for prefix, k in kinds.items() if line.startswith(prefix)), "same")
        result.append(DiffLine(kind, line))
    return result


def _version_number(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def _usage(machine: Machine, versions: list[MachineVersion]) -> dict[int, dict]:
    """Active stacks per version number: how many, and the first few ids."""
    active = machine.stacks.filter(removed_at__isnull=True)  # the reverse relation: no import of stacks
    counts = dict(active.values_list("machine_version__number").annotate(n=Count("id")))
    usage = {}
    for version in versions:
        if counts.get(version.number):
            sample = active.filter(machine_version=version).order_by("key")
            usage[version.number] = {
                "count": counts[version.number],
                "sample": list(sample.values_list("key", flat=True)[:USAGE_SAMPLE]),
            }
    return usage


def _get_version(machine: Machine, number: int | None) -> MachineVersion:
    if number is None:
        return machine.current_version
    return get_object_or_404(MachineVersion, machine=machine, number=number)


def _get_machine(name: str) -> Machine:
    machine = get_object_or_404(Machine.objects.select_related("current_version"), name=name)
    if machine.current_version is None:
        raise Http404(f"machine {name} has no valid version")
    return machine


@role_required(ROLE_VIEWER)
@require_safe
def machine_detail(request: HttpRequest, name: str) -> HttpResponse:
    """Diagrams (Graphviz and Mermaid), legend, YAML, warnings, versions, usage, and a diff."""
    machine = _get_machine(name)
    versions = list(machine.versions.order_by("-number"))
    shown = _get_version(machine, _version_number(request.GET.get("version")))
    by_number = {v.number: v for v in versions}
    a, b = _version_number(request.GET.get("a")), _version_number(request.GET.get("b"))
    diff = None
    if a in by_number and b in by_number:
        diff = version_diff(by_number[min(a, b)], by_number[max(a, b)])
    usage = _usage(machine, versions)
    context = {
        "machine": machine,
        "shown": shown,
        "versions": versions,
        "version_rows": [{"version": v, "usage": usage.get(v.number)} for v in versions],
        "default_a": min(a, b) if diff is not None else (versions[1].number if len(versions) > 1 else None),
        "default_b": max(a, b) if diff is not None else versions[0].number,
        "diff": diff,
        "diff_a": min(a, b) if diff is not None else None,
        "diff_b": max(a, b) if diff is not None else None,
        "yaml_lines": shown.yaml_text.splitlines(),
        "warnings": shown.warnings,
        "mermaid": diagrams.to_mermaid(shown.spec),
        "parsed": shown.spec,
        "upgrade": in_flight.pending_impact(machine),  # stacks on older versions: move them, or why not
        **diagram_context(shown),
    }
    return render(request, "machines_app/machine_detail.html", context)


@role_required(ROLE_VIEWER)
@require_safe
def machine_export(request: HttpRequest, name: str, fmt: str) -> HttpResponse:
    """Download the diagram as SVG, or its DOT or Mermaid source."""
    machine = _get_machine(name)
    version = _get_version(machine, _version_number(request.GET.get("version")))
    if fmt == "svg":
        body = machine_svg(version)
        if body is None:
            return HttpResponse(diagrams.DOT_MISSING, status=503, content_type="text/plain; charset=utf-8")
        body = '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + body
    elif fmt == "dot":
        body = diagrams.to_dot(version.spec)
    else:
        body = diagrams.to_mermaid(version.spec)
    content_type, suffix = EXPORTS[fmt]
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{machine.name}-v{version.number}.{suffix}"'
    return response


# --- the editor ---------------------------------------------------------------------------------------------


def _editor(request: HttpRequest, machine: Machine | None) -> HttpResponse:
    """New machine (machine=None) or a new version of one; the same page and the same save."""
    if request.method == "POST":
        form = MachineForm(request.POST, machine=machine)
    else:
        start = _get_version(machine, _version_number(request.GET.get("from"))) if machine else None
        initial = {"yaml_text": start.yaml_text if start else NEW_MACHINE_TEMPLATE,
                   "base_version": machine.current_version.number if machine else None}
        form = MachineForm(initial=initial, machine=machine)
    problems: list[spec.Problem] = []
    if form.is_bound and form.is_valid():
        name = form.cleaned_data["name"]
        try:
            saved = save_machine(name, form.cleaned_data["yaml_text"], actor=request.user.get_username(),
                                 source="editor")
        except InvalidMachine as exc:
            problems = exc.problems
        else:
            if saved.created:
                messages.success(request, f"Saved {name} version {saved.version.number}")
            else:
                messages.info(request, f"No change: {name} is the same as its version {saved.version.number}")
            return redirect("machines-detail", name=name)
    context = {
        "form": form,
        "machine": machine,
        "problems": problems,
        "stale_version": getattr(form, "stale_version", None),
    }
    return render(request, "machines_app/editor.html", context, status=400 if form.is_bound else 200)


@role_required(ROLE_ADMIN)
def machine_new(request: HttpRequest) -> HttpResponse:
    return _editor(request, None)


@role_required(ROLE_ADMIN)
def machine_edit(request: HttpRequest, name: str) -> HttpResponse:
    return _editor(request, _get_machine(name))


@role_required(ROLE_ADMIN)
@require_POST
def machine_preview(request: HttpRequest) -> JsonResponse:
    """The editor's live diagram: DOT and Mermaid text, and SVG when `dot` is installed.

    Validation itself comes from `POST /api/machines/validate`; this only draws a valid document.
    """
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return JsonResponse({"error": "the machine must be UTF-8 text"}, status=400)
    result = spec.validate(text)
    if result.machine is None:
        return JsonResponse({"error": "the machine is not valid; fix the errors first"}, status=400)
    dot = diagrams.to_dot(result.machine)
    svg = None
    if diagrams.dot_available():
        try:
            svg = diagrams.render_svg(dot)
        except diagrams.DiagramError as exc:
            log.info("preview not drawn: %s", exc)
    return JsonResponse({"dot": dot, "mermaid": diagrams.to_mermaid(result.machine), "svg": svg})
