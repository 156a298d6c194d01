"""The run record in the HTTP API (issue #8): every task attempt of a stack, one attempt, its output.

Thin like `stacks.api.stacks`: parse, read through `stacks.attempts`, answer. Output is text/plain; with
`?since=<line>` only the lines after that line number come back, and `X-Next-Line` says which
number to ask from next time.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from cloudseam_site.accounts.models import ROLE_VIEWER
from cloudseam_site.api import ApiError, api_endpoint
from stacks import attempts
from stacks.api.stacks import MAX_PAGE_SIZE, api_page, find_removed, find_stack
from stacks.models import ATTEMPT_OUTCOMES, Stack, TaskAttempt
from stacks.snapshots import attempt_json

OUTCOME_NAMES = [value for value, _ in ATTEMPT_OUTCOMES]
MAX_ID = 2**63 - 1  # ids are 64-bit; a longer number names nothing (and must not reach the database)


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def stack_tasks(request: HttpRequest, stack_id: str) -> dict:
    return _attempts_page(request, find_stack(stack_id))


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def removed_tasks(request: HttpRequest, record: int) -> dict:
    if record > MAX_ID:
        raise ApiError(404, f"there is no removed stack record {str(record)[:30]}")
    return _attempts_page(request, find_removed(record))


def _attempts_page(request: HttpRequest, stack: Stack) -> dict:
    for name in ("state", "name", "outcome"):
        if "\x00" in request.GET.get(name, ""):
            raise ApiError(400, f"{name} must not contain a NUL character")
    outcome = request.GET.get("outcome", "")
    if outcome and outcome not in OUTCOME_NAMES:
        raise ApiError(400, f"outcome must be one of {', '.join(OUTCOME_NAMES)}; got {outcome[:20]!r}")
    found = attempts.for_stack(stack, state=request.GET.get("state", ""), name=request.GET.get("name", ""),
                               outcome=outcome)
    rows, counts = api_page(request, found, size=50, limit=MAX_PAGE_SIZE)
    return {"stack": stack.key, "record": stack.pk, "removed": stack.removed, **counts,
            "results": [attempt_json(a, stack_key=stack.key) for a in rows]}


def find_attempt(attempt_id: int) -> TaskAttempt:
    attempt = None if attempt_id > MAX_ID else TaskAttempt.objects.select_related("stack").filter(pk=attempt_id).first()
    if attempt is None:
        raise ApiError(404, f"there is no task attempt {str(attempt_id)[:30]}; a stack's attempts are listed at "
                            "/api/stacks/<id>/tasks")
    return attempt


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def attempt_detail(request: HttpRequest, attempt_id: int) -> dict:
    return attempt_json(find_attempt(attempt_id))


@api_endpoint(methods=("GET",), role=ROLE_VIEWER)
def attempt_output(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = find_attempt(attempt_id)
    raw = request.GET.get("since", "")
    if raw and not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"since must be a line number (0 or more); got {raw[:20]!r}")
    lines, last = attempts.lines_since(attempt, min(int(raw[:20]), 2**62) if raw else 0)
    text = "\n".join(lines)
    response = HttpResponse(text + ("\n" if text else ""), content_type="text/plain; charset=utf-8")
    response["X-Next-Line"] = str(last)
    response["X-Attempt-Outcome"] = attempt.outcome
    response["X-Content-Type-Options"] = "nosniff"
    return response
