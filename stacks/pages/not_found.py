"""The HTML 404 page: say what is missing (a stack id, a machine) and offer the way on.

A stack id that belonged to a removed stack links to its record; any stack id offers "create it".
(The API answers its own 404s in JSON; see `cloudseam_site.api`.)
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from machines_app.models import Machine
from stacks.models import Stack


def _stack_context(stack_id: str) -> dict:
    removed = Stack.objects.removed().filter(key=stack_id).order_by("-removed_at").first()
    return {
        "missing": f"stack {stack_id}",
        "stack_id": stack_id,
        "removed": removed,
        "create_url": reverse("stacks-new") + "?" + urlencode({"id": stack_id}),
    }


def _machine_context(name: str) -> dict:
    exists = Machine.objects.filter(name=name).exists()
    return {
        "missing": f"machine {name}" if not exists else f"that version of machine {name}",
        "machine": name,
        "machine_exists": exists,
        "new_machine_url": reverse("machines-new"),
    }


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    match = getattr(request, "resolver_match", None)
    kwargs = match.kwargs if match else {}
    context: dict = {"path": request.path}
    if kwargs.get("stack_id"):
        context.update(_stack_context(str(kwargs["stack_id"])[:63]))
    elif kwargs.get("name") and match.url_name and match.url_name.startswith("machines-"):
        context.update(_machine_context(str(kwargs["name"])[:63]))
    elif exception.args and isinstance(exception.args[0], str) and not exception.args[0].startswith("No "):
        context["detail"] = exception.args[0]
    return render(request, "404.html", context, status=404)
