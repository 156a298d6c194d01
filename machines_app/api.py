"""The machines part of the HTTP API (DESIGN §6.2)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from cloudseam_site.accounts.models import ROLE_ADMIN, ROLE_VIEWER
from cloudseam_site.accounts.roles import request_actor
from cloudseam_site.api import ApiError, api_endpoint, iso, read_body
from machines_app import diagrams, impact, in_flight, spec
from machines_app.models import Machine, MachineVersion
from machines_app.services import InvalidMachine, save_machine, validate_text


def _decode_yaml(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the machine must be UTF-8 text") from None


def version_json(version: MachineVersion) -> dict:
    return {
        "number": version.number,
        "hash": version.content_hash,
        "createdAt": iso(version.created_at),
        "createdBy": version.created_by,
        "source": version.source,
    }


def machine_summary(machine: Machine) -> dict:
    current = machine.current_version
    return {
        "name": machine.name,
        "version": current.number if current else None,
        "updatedAt": iso(machine.updated_at),
    }


def definition_json(machine: spec.Machine) -> dict:
    return {
        "version": machine.version,
        "events": list(machine.events),
        "states": {
            name: {
                "terminal": state.terminal,
                "tasks": list(state.tasks),
                "on": {
                    event: [{"action": a.kind, **({"state": a.state} if a.state else {})} for a in actions]
                    for event, actions in state.on.items()
                },
            }
            for name, state in machine.states.items()
        },
        "tasks": {
            name: {"executor": t.executor, "config": _plain(t.config), "timeout": t.timeout, "retries": t.retries}
            for name, t in machine.tasks.items()
        },
    }


def _plain(value):
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def list_machines(request: HttpRequest) -> dict:
    machines = Machine.objects.select_related("current_version")
    return {"results": [machine_summary(m) for m in machines]}


def _get_machine(name: str) -> Machine:
    machine = Machine.objects.select_related("current_version").filter(name=name).first()
    if machine is None or machine.current_version is None:
        raise ApiError(404, f"machine {name[:63]} does not exist")
    return machine


@api_endpoint(methods=("GET", "PUT"), role={"GET": ROLE_VIEWER, "PUT": ROLE_ADMIN})
def machine_detail(request: HttpRequest, name: str) -> dict | JsonResponse:
    if request.method == "PUT":
        return _put_machine(request, name)
    machine = _get_machine(name)
    version = machine.current_version
    parsed = version.spec
    return {
        **machine_summary(machine),
        "definition": definition_json(parsed),
        "yaml": version.yaml_text,
        "mermaid": diagrams.to_mermaid(parsed),
        "dot": diagrams.to_dot(parsed),
        "warnings": [p.as_dict() for p in version.warnings],
        "versions": [version_json(v) for v in machine.versions.order_by("-number")],
    }


def _put_machine(request: HttpRequest, name: str) -> JsonResponse:
    text = _decode_yaml(read_body(request, kind="yaml"))
    try:
        saved = save_machine(name, text, actor=str(request_actor(request)), source="api")
    except InvalidMachine as exc:
        return JsonResponse(
            {
                "error": f"machine {name[:63]} is not valid; nothing was saved",
                "errors": [p.as_dict() for p in exc.problems],
            },
            status=400,
        )
    return JsonResponse(
        {
            "name": name,
            "version": saved.version.number,
            "created": saved.created,
            "warnings": [p.as_dict() for p in saved.warnings],
        },
        status=201 if saved.created else 200,
    )


@api_endpoint(methods=("POST",), role=ROLE_VIEWER)
def validate_machine(request: HttpRequest) -> dict:
    text = _decode_yaml(read_body(request, kind="yaml"))
    return validate_text(text).as_dict()


@api_endpoint(methods=("POST",), role=ROLE_VIEWER)
def machine_impact(request: HttpRequest, name: str) -> dict | JsonResponse:
    """What saving the YAML body as the machine's newest version would do to its active stacks."""
    machine = _get_machine(name)
    result = validate_text(_decode_yaml(read_body(request, kind="yaml")))
    if result.machine is None:
        body = {"error": "the draft is not a valid machine; fix its errors to see its impact", **result.as_dict()}
        return JsonResponse(body, status=400)
    return impact_json(machine, result.machine, in_flight.draft_impact(machine, result.machine))


def impact_json(machine: Machine, draft: spec.Machine, found: impact.Impact) -> dict:
    """The impact as JSON, each state with its diagram node id when the draft still has it."""
    body = found.as_dict()
    for state, counts in body["states"].items():
        counts["inDraft"] = state in draft.states
        counts["nodeId"] = diagrams.svg_node_id(state) if state in draft.states else None
    return {"machine": machine.name, "currentVersion": machine.current_version.number, **body}
