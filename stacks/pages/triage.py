"""The dashboard's bulk actions: one action for the ticked stacks, or for all that match the filters.

Thin: read the form, find the stacks, run `stacks.bulk` (each stack through `handle_event`), show
the report. Works as a plain form post; the dashboard script only helps choose.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudseam_site.accounts.models import ROLE_OPERATOR
from cloudseam_site.accounts.roles import request_actor, role_required
from stacks import bulk
from stacks.models import Stack
from stacks.pages.forms import StackFilterForm
from stacks.triage import BulkActionForm

SOURCE = "ui"


def _report(request: HttpRequest, back: str, *, action: str = "", outcomes=(), error: str = "",
            status: int = 200) -> HttpResponse:
    outcomes = list(outcomes)
    context = {
        "title": bulk.ACTIONS.get(action, "Bulk action"),
        "back": back,
        "error": error,
        "done": [o for o in outcomes if o.ok],
        "refused": [o for o in outcomes if not o.ok],
    }
    return render(request, "stacks/bulk_result.html", context, status=status)


def _chosen(request: HttpRequest, form: BulkActionForm, filters: StackFilterForm) -> tuple[list, list, str]:
    """The stacks to act on, outcomes for ticked ids that are gone, and a refusal sentence (or "")."""
    if form.cleaned_data["scope"] == "all":
        stacks = filters.apply(Stack.objects.active())
        count = stacks.count()
        if form.cleaned_data["confirm"] != str(count):
            return [], [], (f"{count} stack{'s' if count != 1 else ''} match this filter now: type {count} to "
                            f"confirm acting on all of them (you typed {form.cleaned_data['confirm'] or 'nothing'})")
        if count > bulk.LIMIT:
            return [], [], (f"{count} stacks match this filter; one bulk action takes at most {bulk.LIMIT}: "
                            "narrow the filter")
        return list(stacks), [], ""
    keys = list(dict.fromkeys(request.POST.getlist("stack")))
    if not keys:
        return [], [], "tick the stacks to act on, or choose all stacks matching the filter"
    if len(keys) > bulk.LIMIT:
        return [], [], f"{len(keys)} stacks were ticked; one bulk action takes at most {bulk.LIMIT}"
    stacks = list(Stack.objects.active().filter(key__in=keys).order_by("key"))
    found = {s.key for s in stacks}
    gone = [bulk.Outcome(key[:63], "there is no active stack with this id (it was removed?); nothing was done")
            for key in keys if key not in found]
    return stacks, gone, ""


@role_required(ROLE_OPERATOR)
@require_POST
def bulk_action(request: HttpRequest) -> HttpResponse:
    filters = StackFilterForm(request.POST)
    back = reverse("stacks-dashboard") + ("?" + urlencode(filters.filters()) if filters.filters() else "")
    form = BulkActionForm(request.POST)
    if not form.is_valid():
        return _report(request, back, error=form.first_error(), status=400)
    action = form.cleaned_data["action"]
    stacks, gone, refusal = _chosen(request, form, filters)
    if refusal:
        return _report(request, back, action=action, error=refusal, status=400)
    outcomes = bulk.run(action, stacks, actor=request_actor(request), source=SOURCE,
                        event=form.cleaned_data["event"], metadata=form.cleaned_data.get("metadata"))
    return _report(request, back, action=action, outcomes=outcomes + gone)
