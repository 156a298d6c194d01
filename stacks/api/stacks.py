"""The stacks part of the HTTP API (DESIGN §6.2). Thin: parse, call one service, answer."""

from __future__ import annotations

from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, JsonResponse

from cloudseam_site.accounts.models import ROLE_OPERATOR, ROLE_VIEWER
from cloudseam_site.accounts.roles import request_actor
from cloudseam_site.api import ApiError, api_endpoint, read_body
from stacks.models import (
    DEFAULT_IDLE_HOURS,
    MAX_IDLE_HOURS,
    QUICK_FILTERS,
    Stack,
    StackEvent,
    current_tasks_by_stack,
)
from stacks.services import handle_event
from stacks.snapshots import event_json, stack_json

MAX_PAGE_SIZE = 200


@api_endpoint(methods=("POST",), role=ROLE_OPERATOR)
def post_event(request: HttpRequest) -> JsonResponse:
    message = read_body(request)
    result = handle_event(message, actor=request_actor(request), source="api")
    return JsonResponse(result.body, status=result.status)


def _int_param(request: HttpRequest, name: str, default: int, limit: int | None = None) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ApiError(400, f"{name} must be a whole number of 1 or more; got {raw[:20]!r}")
    return min(int(raw), limit) if limit else int(raw)


def api_page(request: HttpRequest, items, *, size: int, limit: int) -> tuple[list, dict]:
    """One page of `items` (`?page=`, `?pageSize=` up to `limit`) and the counts every listing answers."""
    paginator = Paginator(items, _int_param(request, "pageSize", size, limit))
    try:
        page = paginator.page(_int_param(request, "page", 1))
    except EmptyPage:
        raise ApiError(404, f"there is no page {request.GET.get('page')}; pages: {paginator.num_pages}") from None
    return list(page.object_list), {"count": paginator.count, "page": page.number, "pages": paginator.num_pages}


def _stack_filters(request: HttpRequest):
    removed = request.GET.get("removed", "false").lower()
    if removed not in ("true", "false"):
        raise ApiError(400, "removed must be true or false")
    stacks = Stack.objects.removed() if removed == "true" else Stack.objects.active()
    status = request.GET.get("status", "")
    if status and status not in QUICK_FILTERS:
        raise ApiError(400, f"status must be one of {', '.join(QUICK_FILTERS)}; got {status[:20]!r}")
    idle_hours = _int_param(request, "idleHours", DEFAULT_IDLE_HOURS)
    if idle_hours > MAX_IDLE_HOURS:
        raise ApiError(400, f"idleHours must be at most {MAX_IDLE_HOURS} (a year); got {idle_hours}")
    return stacks.search(q=request.GET.get("q", ""), machine=request.GET.get("machine", ""),
                         state=request.GET.get("state", ""), status=status, idle_hours=idle_hours)


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def list_stacks(request: HttpRequest) -> dict:
    stacks = _stack_filters(request).select_related("machine", "machine_version").order_by("key", "-removed_at")
    rows, counts = api_page(request, stacks, size=50, limit=MAX_PAGE_SIZE)
    tasks = current_tasks_by_stack(rows)
    return {**counts, "results": [stack_json(s, tasks.get(s.pk, [])) for s in rows]}


def find_stack(stack_id: str) -> Stack:
    stack = Stack.objects.latest_for(stack_id)
    if stack is None:
        raise ApiError(404, f"stack {stack_id[:63]} does not exist")
    return stack


def find_removed(record: int) -> Stack:
    stack = Stack.objects.removed().select_related("machine", "machine_version").filter(pk=record).first()
    if stack is None:
        raise ApiError(404, f"there is no removed stack record {record}")
    return stack


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def stack_detail(request: HttpRequest, stack_id: str) -> dict:
    return stack_json(find_stack(stack_id))


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def removed_detail(request: HttpRequest, record: int) -> dict:
    return stack_json(find_removed(record))


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def stack_history(request: HttpRequest, stack_id: str) -> dict:
    return _history(request, find_stack(stack_id))


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def removed_history(request: HttpRequest, record: int) -> dict:
    return _history(request, find_removed(record))


def _history(request: HttpRequest, stack: Stack) -> dict:
    events, counts = api_page(request, StackEvent.objects.filter(stack=stack), size=100, limit=500)
    return {"stack": stack.key, "record": stack.pk, "removed": stack.removed, **counts,
            "results": [event_json(e) for e in events]}
