"""The stack page's run record (issue #8): the path taken, state visits with their attempts, the
timeline scrubber's frames.

`run_context` adds to `stacks.pages.views.detail_context`; the frames themselves are served apart
(`replay.json`) so the page stays light with a long history. Views stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models.functions import Right
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_safe

from cloudseam_site.accounts.models import ROLE_VIEWER
from cloudseam_site.accounts.roles import role_required
from machines_app.diagrams import RunPath, svg_edge_id, svg_node_id
from stacks import attempts, history
from stacks.models import ATTEMPT_FAILED, ATTEMPT_LOST, Stack, TaskAttempt

ATTEMPTS_PAGE = 30  # attempts rendered with the page; older ones load on demand from the API
VISITS_SHOWN = 20  # state visits rendered with the page (newest first); ?visits=all for every one
OUTPUT_SHOWN = 8000  # characters of each attempt's output rendered with the page (the end of it)


@dataclass
class Visit:
    """One stay of the stack in a state: from the entry that entered it to the one that left it."""

    number: int
    state: str
    event_id: int
    entered: datetime
    left: datetime | None = None
    attempts: list = field(default_factory=list)
    offset: float = 0.0  # position and width on the run's time axis, in percent
    width: float = 0.0

    @property
    def duration_seconds(self) -> float | None:
        return (self.left - self.entered).total_seconds() if self.left else None

    @property
    def entered_text(self) -> str:
        return exact(self.entered)

    @property
    def left_text(self) -> str:
        return exact(self.left) if self.left else "now"


def exact(moment: datetime | None) -> str:
    """An absolute time with seconds, as every page shows it on hover and focus (formatted here:
    the template's date filter costs more on a page with hundreds of times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def visits_of(frames: list[dict], end: datetime | None) -> list[Visit]:
    """State visits, oldest first, from the replay frames' `entered` states (NEXT chains included)."""
    found: list[Visit] = []
    for frame in frames:
        when = parse_datetime(frame["createdAt"]) if frame["createdAt"] else None
        for state in frame["entered"]:
            if found and found[-1].left is None:
                found[-1].left = when
            found.append(Visit(number=len(found) + 1, state=state, event_id=frame["eventId"], entered=when))
    if found and found[-1].left is None and end is not None:
        found[-1].left = end
    return found


def _place(visits: list[Visit], page: list[TaskAttempt], start: datetime, end: datetime) -> None:
    """Attach each attempt to its visit (same state, the last one entered before it was queued) and
    lay visits and attempts out on one time axis."""
    span = max((end - start).total_seconds(), 0.001)

    def pos(moment: datetime | None) -> float:
        return 0.0 if moment is None else min(100.0, max(0.0, (moment - start).total_seconds() / span * 100))

    for visit in visits:
        visit.offset = pos(visit.entered)
        visit.width = max(0.5, pos(visit.left or end) - visit.offset)
    by_state: dict[str, list[Visit]] = {}
    for visit in visits:
        by_state.setdefault(visit.state, []).append(visit)
    for attempt in page:
        moment = attempt.queued_at or attempt.started_at
        candidates = by_state.get(attempt.state, [])
        home = next((v for v in reversed(candidates) if moment and (moment - v.entered).total_seconds() > -2), None)
        attempt.offset = pos(attempt.started_at)
        attempt.width = max(0.5, pos(attempt.finished_at or end) - attempt.offset)
        attempt.open = attempt.outcome in (ATTEMPT_FAILED, ATTEMPT_LOST)
        attempt.started_text = exact(attempt.started_at)
        attempt.finished_text = exact(attempt.finished_at) if attempt.finished_at else "running"
        attempt.started_iso = _iso(attempt.started_at)
        attempt.dropped_note = attempts.dropped_note(attempt.dropped_lines) if attempt.dropped_lines else ""
        if home is not None:
            home.attempts.append(attempt)


def run_context(request: HttpRequest, stack: Stack) -> dict:
    """The path for the diagram, the state visits with the first page of attempts, the scrubber's data."""
    frames = history.frames(stack)
    last = frames[-1] if frames else None
    path = RunPath.of(last["path"]["edges"], last["path"]["failed"]) if last else RunPath()
    end = stack.removed_at or timezone.now()
    visits = visits_of(frames, stack.removed_at)
    page = list(
        attempts.for_stack(stack).defer("output").annotate(output_end=Right("output", OUTPUT_SHOWN))[:ATTEMPTS_PAGE + 1]
    )
    more = len(page) > ATTEMPTS_PAGE
    page = page[:ATTEMPTS_PAGE]
    _place(visits, page, stack.created_at, end)
    shown = visits if request.GET.get("visits") == "all" else visits[-VISITS_SHOWN:]
    api = (reverse("api-removed-stack-tasks", args=[stack.pk]) if stack.removed
           else reverse("api-stack-tasks", args=[stack.key]))
    return {
        "run_path": path,
        "visits": list(reversed(shown)),
        "visits_hidden": len(visits) - len(shown),
        "attempts_more": more,
        "run_data": {
            "replayUrl": _replay_url(stack),
            "attemptsUrl": api,
            "attemptsPageSize": ATTEMPTS_PAGE,
            "attemptsMore": more,
            "events": len(frames),
            "removed": stack.removed,
            "nodeIds": {state: svg_node_id(state) for state in stack.machine_version.spec.states},
            "edgeIds": _edge_ids(stack.machine_version.spec),
            "visits": [{"state": v.state, "entered": _iso(v.entered), "left": _iso(v.left), "number": v.number}
                       for v in visits],
            "start": _iso(stack.created_at),
        },
    }


def _edge_ids(machine) -> dict[str, list[str]]:
    """For each "FROM>TO" the machine can take, the ids of the drawn edges (a NEXT edge apart)."""
    found: dict[str, list[str]] = {}
    for name, state in machine.states.items():
        for event in state.on:
            target = state.leads_to(event)
            if target is not None:
                ids = found.setdefault(f"{name}>{target}", [])
                edge = svg_edge_id(name, target, event == "NEXT")
                if edge not in ids:
                    ids.append(edge)
    return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _replay_url(stack: Stack) -> str:
    if stack.removed:
        return reverse("stacks-removed-replay", args=[stack.pk])
    return reverse("stacks-replay", args=[stack.key])


@role_required(ROLE_VIEWER)
@require_safe
def stack_replay(request: HttpRequest, stack_id: str) -> JsonResponse:
    """The scrubber's frames: the stack right after each history entry, replayed through the engine."""
    stack = Stack.objects.active().select_related("machine", "machine_version").filter(key=stack_id).first()
    if stack is None:
        raise Http404(f"stack {stack_id} does not exist or was removed")
    return JsonResponse({"stack": stack.key, "record": stack.pk, "frames": history.frames(stack)})


@role_required(ROLE_VIEWER)
@require_safe
def removed_replay(request: HttpRequest, pk: int) -> JsonResponse:
    if pk > 2**63 - 1:
        raise Http404(f"there is no removed stack record {str(pk)[:30]}")
    stack = get_object_or_404(Stack.objects.removed().select_related("machine", "machine_version"), pk=pk)
    return JsonResponse({"stack": stack.key, "record": stack.pk, "frames": history.frames(stack)})
