"""Pages for stacks: the live dashboard, a stack's page with its actions, new and removed stacks.

Views stay thin: read the request, call one function of `stacks.services`, render. Every action is
a plain POST form with CSRF that works without JavaScript (redirect on success, the page again with
the error inline on failure); the page scripts send the same forms with `Accept: application/json`
and get the result as JSON instead. Live updates come from the WebSocket consumers, not from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from cloudseam_site.accounts.models import ROLE_OPERATOR, ROLE_VIEWER
from cloudseam_site.accounts.roles import has_role, request_actor, role_required
from cloudseam_site.api import iso
from machines_app import diagrams
from machines_app.diagram_context import diagram_context
from machines_app.models import Machine
from stacks import lifetimes, services, triage
from stacks.metadata_editor import METADATA_HELP, MetadataRows, display_value, value_type
from stacks.models import (
    ERROR,
    PENDING,
    SATISFIED,
    Stack,
    StackEvent,
    Task,
    current_tasks_by_stack,
)
from stacks.pages import run as run_views
from stacks.pages.forms import SORT_LABELS, EventForm, NewStackForm, RetryForm, StackFilterForm, TaskResultForm
from stacks.snapshots import event_json, stack_json

PAGE_SIZE = 50
HISTORY_PAGE_SIZE = 50
SOURCE = "ui"


def wants_json(request: HttpRequest) -> bool:
    """The page scripts send forms with fetch and ask for JSON; plain form posts get HTML."""
    return "application/json" in request.headers.get("Accept", "")


# --- the dashboard -----------------------------------------------------------------------------------


@dataclass
class Progress:
    """Task progress of a stack's current state, as the dashboard shows it (3/5, 1 failed)."""

    done: int
    total: int
    failed: int

    @property
    def condition(self) -> str:
        """What the state badge's colour says: a task failed, tasks are running, or all is done."""
        if self.failed:
            return "failed"
        return "busy" if self.done < self.total else "stable"

    @classmethod
    def of(cls, tasks: list[Task]) -> Progress:
        return cls(
            done=sum(t.status == SATISFIED for t in tasks),
            total=len(tasks),
            failed=sum(t.status == ERROR for t in tasks),
        )


def _stack_page(request: HttpRequest, stacks, form: StackFilterForm) -> tuple[Page, list[dict]]:
    """One page of the filtered, sorted stacks: their ids first, then only those rows, in one query.

    Sorting and skipping whole rows (each joined to its machine version's YAML) made deep pages slow;
    sorting and skipping ids is an index scan for the usual orders (see `Stack.Meta.indexes`).
    """
    ordered = form.apply(stacks)
    page = Paginator(ordered.values_list("pk", flat=True), PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(ordered.filter(pk__in=page.object_list).select_related("machine", "machine_version"))
    rows = page.object_list
    tasks = current_tasks_by_stack(rows)
    return page, [{"stack": s, "tasks": tasks.get(s.pk, []), "progress": Progress.of(tasks.get(s.pk, [])),
                   "expiry": lifetimes.expiry_of(s)} for s in rows]


@role_required(ROLE_VIEWER)
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    """Active stacks, filtered, sorted and paginated in the database so 10 000 stacks stay fast."""
    form = StackFilterForm(request.GET)
    page, rows = _stack_page(request, Stack.objects.active(), form)
    counts = form.search(Stack.objects.active(), status=False).quick_counts(form.idle_hours)  # one query
    if request.GET.get("format") == "json":  # the live table asks for its page again after a reconnect
        return JsonResponse({
            "count": page.paginator.count,
            "page": page.number,
            "pages": page.paginator.num_pages,
            "start": page.start_index(),
            "end": page.end_index(),
            "counts": counts,
            "stacks": [stack_json(r["stack"], r["tasks"]) for r in rows],
        })
    filters = form.filters()
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "machines": Machine.objects.values_list("name", flat=True),
        "states": Stack.objects.active().order_by("state").values_list("state", flat=True).distinct(),
        "sorts": SORT_LABELS,
        "filters": {name: form.value(name) for name in ("q", "machine", "state", "sort", "status", "idleHours")},
        "filtered": bool(filters),
        "quick_filters": triage.quick_filters(filters, counts, form.idle_hours),
        "idle_hours": form.idle_hours,
        "bulk_events": triage.bulk_events() if has_role(request, ROLE_OPERATOR) else [],
    }
    return render(request, "stacks/dashboard.html", context)


# --- one stack ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventChoice:
    """An event the stack's state accepts, and whether it leads to a terminal state (confirm first)."""

    name: str
    target: str | None
    terminal: bool


def event_choices(machine, state: str) -> list[EventChoice]:
    """The user events `state` accepts, in document order, with where each one leads."""
    if state not in machine.states:
        return []
    choices = []
    for event in machine.accepted_events(state):
        target = machine.states[state].leads_to(event)
        terminal = target is not None and machine.states[target].terminal
        choices.append(EventChoice(event, target, terminal))
    return choices


def find_active(stack_id: str) -> Stack | None:
    return Stack.objects.active().select_related("machine", "machine_version").filter(key=stack_id).first()


def _history_page(request: HttpRequest, stack: Stack) -> Page:
    page = Paginator(StackEvent.objects.filter(stack=stack), HISTORY_PAGE_SIZE).get_page(
        request.GET.get("history_page")
    )
    page.object_list = list(page.object_list)  # read once, used by the template and the page data
    return page


def _page_data(stack: Stack, machine, tasks: list[Task], history: Page) -> dict:
    """What the page script needs besides the WebSocket: the machine's events per state."""
    return {
        "stackId": stack.key,
        "removed": stack.removed,
        "events": {
            state: [{"name": c.name, "target": c.target, "terminal": c.terminal} for c in event_choices(machine, state)]
            for state in machine.states
        },
        "nodeIds": {state: diagrams.svg_node_id(state) for state in machine.states},
        # For external tasks that appear while the page is open (their buttons are built in the browser).
        "instructions": {name: t.config.get("instructions", "") for name, t in machine.tasks.items()
                         if t.config.get("instructions")},
        "stack": stack_json(stack, tasks),
        "history": [event_json(e) for e in history.object_list],
        "liveHistory": history.number == 1,
        "wsPath": f"/ws/stacks/{stack.key}/",
        "outputUrl": reverse("stacks-output", args=[stack.key]),
        "detailUrl": reverse("stacks-detail", args=[stack.key]),
    }


def task_rows(machine, tasks: list[Task]) -> list[tuple[Task, str]]:
    """Each current task with what its machine tells the person who completes it (external tasks)."""
    rows = []
    for task in tasks:
        definition = machine.tasks.get(task.name)
        rows.append((task, definition.config.get("instructions", "") if definition else ""))
    return rows


def detail_context(request: HttpRequest, stack: Stack, **extra) -> dict:
    """Everything the stack page shows; `extra` carries a failed action's form and error."""

    machine = stack.machine_version.spec
    tasks = list(stack.current_tasks())
    history = _history_page(request, stack)
    highlight = stack.state if stack.state in machine.states else None
    newest = stack.machine.current_version_id
    run = run_views.run_context(request, stack)
    context = {
        "stack": stack,
        "tasks": tasks,
        "task_rows": task_rows(machine, tasks),
        "progress": Progress.of(tasks),
        "history": history,
        "events": [] if stack.removed else event_choices(machine, stack.state),
        "has_failed": any(t.status == ERROR for t in tasks),
        "has_pending": any(t.status == PENDING and t.started_at is None for t in tasks),  # not running
        "metadata_items": [(k, display_value(v), value_type(v)) for k, v in stack.metadata.items()],
        "history_rows": [
            {"event": e, "metadata": [(k, display_value(v)) for k, v in e.metadata.items()]}
            for e in history.object_list
        ],
        "metadata_form": extra.pop("metadata_form", None) or MetadataRows(shown=stack.metadata),
        "metadata_help": METADATA_HELP,
        "can_upgrade": not stack.removed and newest is not None and newest != stack.machine_version_id,
        "expiry": None if stack.removed else lifetimes.expiry_of(stack),
        "page_data": _page_data(stack, machine, tasks, history),
        "blank_choice": EventChoice("EVENT", "TARGET", terminal=False),
        "blank_terminal_choice": EventChoice("EVENT", "TARGET", terminal=True),
        **run,
        **diagram_context(stack.machine_version, highlight=highlight, path=run["run_path"]),
    }
    context.update(extra)
    return context


@role_required(ROLE_VIEWER)
@require_safe
def stack_detail(request: HttpRequest, stack_id: str) -> HttpResponse:
    stack = find_active(stack_id)
    if stack is None:
        removed = Stack.objects.removed().filter(key=stack_id).order_by("-removed_at").first()
        if removed is None:
            raise Http404(f"stack {stack_id} does not exist")
        return redirect("stacks-removed-detail", pk=removed.pk)
    return render(request, "stacks/detail.html", detail_context(request, stack))


@role_required(ROLE_VIEWER)
@require_safe
def stack_output(request: HttpRequest, stack_id: str) -> JsonResponse:
    """The kept tail of each current task's output, for a page that reconnects after a gap."""
    stack = Stack.objects.latest_for(stack_id)
    if stack is None:
        raise Http404(f"stack {stack_id} does not exist")
    return JsonResponse({"outputs": {t.id: t.output_tail for t in stack.current_tasks()}})


def _answer(request: HttpRequest, stack: Stack, result: services.EventResult, done: str, **extra) -> HttpResponse:
    """The result of an action: JSON for scripts; a redirect, or the page with the error, for forms."""
    error = None if result.ok else result.body.get("error", "the action failed")
    if wants_json(request):
        stack_snapshot = result.body if result.ok and "id" in result.body else None
        return JsonResponse({"ok": result.ok, "message": done if result.ok else None, "error": error,
                             "stack": stack_snapshot}, status=result.status)
    if result.ok:
        messages.success(request, done)
        return redirect("stacks-detail", stack_id=stack.key)
    context = detail_context(request, stack, action_error=error, **extra)
    return render(request, "stacks/detail.html", context, status=result.status)


def _refuse(request: HttpRequest, stack: Stack, error: str, status: int = 400, **extra) -> HttpResponse:
    return _answer(request, stack, services.EventResult(status, {"error": error}, "rejected"), "", **extra)


def _operable(stack_id: str) -> Stack:
    stack = find_active(stack_id)
    if stack is None:
        raise Http404(f"stack {stack_id} does not exist or was removed")
    return stack


@role_required(ROLE_OPERATOR)
@require_POST
def stack_event(request: HttpRequest, stack_id: str) -> HttpResponse:
    """One event button. Events that end the stack need its id typed as confirmation."""
    stack = _operable(stack_id)
    form = EventForm(request.POST)
    if not form.is_valid():
        return _refuse(request, stack, "choose one of the event buttons")
    event = form.cleaned_data["event"]
    choice = next((c for c in event_choices(stack.machine_version.spec, stack.state) if c.name == event), None)
    if choice is not None and choice.terminal and form.cleaned_data["confirm"] != stack.key:
        return _refuse(request, stack, f"{event} ends stack {stack.key}: type the stack id to confirm")
    before = stack.state
    result = services.send(stack.key, event, actor=request_actor(request), source=SOURCE)
    after = result.body.get("state", before)
    return _answer(request, stack, result, f"{event} applied: {before} → {after}")


@role_required(ROLE_OPERATOR)
@require_POST
def stack_retry(request: HttpRequest, stack_id: str) -> HttpResponse:
    stack = _operable(stack_id)
    form = RetryForm(request.POST)
    if not form.is_valid():
        return _refuse(request, stack, "choose to retry failed or pending tasks")
    result = services.send(stack.key, form.event, actor=request_actor(request), source=SOURCE)
    return _answer(request, stack, result, f"{form.cleaned_data['which'].capitalize()} tasks sent to run again")


@role_required(ROLE_OPERATOR)
@require_POST
def stack_retry_task(request: HttpRequest, stack_id: str) -> HttpResponse:
    """Retry one failed task (RETRY_TASK through handle_event); the stack's other tasks stay as they are."""
    stack = _operable(stack_id)
    name = request.POST.get("task", "")
    if not name or len(name) > 63:
        return _refuse(request, stack, "name the failed task to retry")
    result = services.send(stack.key, services.RETRY_TASK, task={"name": name}, actor=request_actor(request),
                           source=SOURCE)
    return _answer(request, stack, result, f"Task {name} sent to run again")


@role_required(ROLE_OPERATOR)
@require_POST
def stack_task(request: HttpRequest, stack_id: str) -> HttpResponse:
    """Mark an external task done, or failed with a reason."""
    stack = _operable(stack_id)
    form = TaskResultForm(request.POST)
    if not form.is_valid():
        error = "; ".join(f"{e}" for errors in form.errors.values() for e in errors)
        return _refuse(request, stack, error)
    name = form.cleaned_data["task"]
    result = services.send(
        stack.key, form.event, task={"name": name}, description=form.cleaned_data["reason"] or None,
        actor=request_actor(request), source=SOURCE,
    )
    return _answer(request, stack, result, f"Task {name} marked {form.cleaned_data['outcome']}")


@role_required(ROLE_OPERATOR)
@require_POST
def stack_metadata(request: HttpRequest, stack_id: str) -> HttpResponse:
    """Send what the person changed in the rows they were shown; nothing is saved unless every row is valid."""
    stack = _operable(stack_id)
    rows = MetadataRows(request.POST)
    if not rows.is_valid():
        rows.error = rows.error or "nothing was saved: fix the rows marked below"
        if wants_json(request):
            return JsonResponse({"ok": False, "error": rows.error,
                                 "rows": [r.error for r in rows.rows]}, status=400)
        return _refuse(request, stack, rows.error, metadata_form=rows, metadata_open=True)
    if not rows.changes:
        return _answer(request, stack, services.EventResult(200, {}, "applied"), "Metadata unchanged")
    result = services.update_metadata(stack.key, rows.changes, actor=request_actor(request), source=SOURCE)
    if not result.ok:
        rows.error = result.body.get("error", "")
    return _answer(request, stack, result, "Metadata saved", metadata_form=rows, metadata_open=True)


@role_required(ROLE_OPERATOR)
@require_POST
def stack_upgrade(request: HttpRequest, stack_id: str) -> HttpResponse:
    stack = _operable(stack_id)
    result = services.upgrade_machine(stack.key, actor=request_actor(request), source=SOURCE)
    return _answer(request, stack, result, f"Stack now uses the newest version of {stack.machine.name}")


@role_required(ROLE_OPERATOR)
@require_POST
def stack_extend(request: HttpRequest, stack_id: str) -> HttpResponse:
    """"Extend by <ttl>": moves the stack's expiry later by setting its `expiresAt` metadata."""
    stack = _operable(stack_id)
    until = lifetimes.extended_until(stack)
    if until is None:
        return _refuse(request, stack, f"stack {stack.key} has no lifetime to extend; set ttl or expiresAt in its "
                       "metadata, or a lifetime in its machine", status=409)
    result = services.update_metadata(stack.key, {lifetimes.EXPIRES_AT: iso(until)},
                                      actor=request_actor(request), source=SOURCE)
    return _answer(request, stack, result, f"Stack {stack.key} now expires at {until:%Y-%m-%d %H:%M} UTC")


# --- new stack -----------------------------------------------------------------------------------------


def first_events() -> dict[str, list[str]]:
    """Each machine with a valid version, and the events its INIT state accepts."""
    machines = Machine.objects.filter(current_version__isnull=False).select_related("current_version")
    found = {}
    for machine in machines:
        spec = machine.current_version.spec
        found[machine.name] = [c.name for c in event_choices(spec, "INIT")]
    return found


def busiest_machine(names: list[str]) -> str:
    """Of `names`, the machine most active stacks use; ties by name, and the first name when none is used."""
    busiest = (
        Machine.objects.filter(name__in=names)
        .annotate(active=Count("stacks", filter=Q(stacks__removed_at__isnull=True)))
        .filter(active__gt=0)
        .order_by("-active", "name")
        .values_list("name", flat=True)
        .first()
    )
    return busiest or next(iter(names), "")


@role_required(ROLE_OPERATOR)
def stack_new(request: HttpRequest) -> HttpResponse:
    """Create a stack by sending its first event; on success, land on its page to watch it go."""
    events = first_events()
    asked = request.GET.get("machine", "")
    initial = {"machine": asked if asked in events else busiest_machine(list(events)),
               "stack_id": request.GET.get("id", "")[:63]}  # from a 404 page's "create it"
    form = NewStackForm(request.POST if request.method == "POST" else None, first_events=events, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        result = services.send(
            data["stack_id"], data["event"], machine=data["machine"], metadata=form.metadata.changes or None,
            actor=request_actor(request), source=SOURCE,
        )
        if result.ok:
            messages.success(request, f"Stack {data['stack_id']} created: {data['event']} applied")
            return redirect("stacks-detail", stack_id=data["stack_id"])
        form.add_error(None, result.body.get("error", "the stack could not be created"))
    context = {"form": form, "first_events": events, "metadata_help": METADATA_HELP}
    return render(request, "stacks/new.html", context, status=400 if form.errors else 200)


# --- removed stacks ------------------------------------------------------------------------------------


@role_required(ROLE_VIEWER)
@require_safe
def removed_list(request: HttpRequest) -> HttpResponse:
    """The archive: removed stacks keep their record and history, newest removal first."""
    q, machine = request.GET.get("q", "")[:100], request.GET.get("machine", "")[:63]
    stacks = Stack.objects.removed().select_related("machine", "machine_version").search(q=q, machine=machine)
    page = Paginator(stacks.order_by(F("removed_at").desc(), "-pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "q": q, "machine": machine, "machines": Machine.objects.values_list("name", flat=True)}
    return render(request, "stacks/removed_list.html", context)


@role_required(ROLE_VIEWER)
@require_safe
def removed_detail(request: HttpRequest, pk: int) -> HttpResponse:
    stack = get_object_or_404(Stack.objects.removed().select_related("machine", "machine_version"), pk=pk)
    context = detail_context(request, stack)
    return render(request, "stacks/removed_detail.html", context)
