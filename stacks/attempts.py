"""Recording task attempts (issue #8): every try of every task instance, with bounded output.

A job opens an attempt when it claims its task and when it tries again (`retries`), streams output
into it in batches (`OutputBuffer`, flushed with the job's output about once a second), and closes
it with the try's result. An external task (no job) gets its attempt when a person (or an outside
system) reports it; a task failed by the liveness check has its open attempt closed as `lost`.
Nothing here is on the event path of ordinary worker reports: `note_reports` touches the database
only for reports that did not come from a job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from cloudseam_site import prepared_sql
from machines_app.spec.model import ERROR, SATISFIED, TASK_COMPLETED, TASK_ERROR
from stacks.models import (
    ATTEMPT_CANCELLED,
    ATTEMPT_FAILED,
    ATTEMPT_LOST,
    ATTEMPT_RUNNING,
    ATTEMPT_SUCCEEDED,
    Task,
    TaskAttempt,
)

LIVENESS_ACTOR = "liveness-check"


def dropped_note(count: int) -> str:
    return f"… {count} earlier line{'s' if count != 1 else ''} dropped"


class OutputBuffer:
    """The last lines of one attempt's output, at most `max_bytes` (UTF-8) of them.

    Line numbers are absolute: line 1 is the first line the attempt ever wrote, even once dropped,
    so `?since=<line>` keeps working while the front of the output is being dropped.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else settings.CLOUDSEAM_ATTEMPT_OUTPUT_MAX_BYTES
        self.lines: deque[str] = deque()
        self.size = 0
        self.dropped = 0
        self.total = 0

    def add(self, lines: Iterable[str]) -> None:
        for line in lines:
            encoded = line.encode("utf-8", "replace")
            if len(encoded) >= self.max_bytes:  # a single huge line is cut, not allowed to evict everything
                encoded = encoded[: max(self.max_bytes - 1, 0)]
                line = encoded.decode("utf-8", "ignore")
            self.lines.append(line)
            self.size += len(encoded) + 1
            self.total += 1
        while self.size > self.max_bytes and self.lines:
            self.size -= len(self.lines.popleft().encode("utf-8", "replace")) + 1
            self.dropped += 1

    def fields(self) -> dict:
        return {"output": "\n".join(self.lines), "line_count": self.total, "dropped_lines": self.dropped}


# --- what jobs call --------------------------------------------------------------------------------


def start(task: Task, number: int) -> TaskAttempt:
    """Open an attempt for a task instance a job has just claimed (or is trying again)."""
    return prepared_sql.insert(TaskAttempt(
        task=task, stack_id=task.stack_id, state=task.state, task_name=task.name, executor=task.executor,
        number=max(1, number), queued_at=task.created_at, started_at=timezone.now(),
    ))


def save_output(attempt_id: int, buffer: OutputBuffer) -> None:
    TaskAttempt.objects.filter(pk=attempt_id).update(**buffer.fields())


def finish(attempt_id: int, *, ok: bool, error: str = "", buffer: OutputBuffer | None = None,
           outcome: str | None = None) -> bool:
    """Close a running attempt (with its output, in the same UPDATE); False when it was already
    closed (e.g. as lost): it keeps what it was told, and its output was not written."""
    fields = buffer.fields() if buffer is not None else {}
    fields.update(finished_at=timezone.now(), outcome=outcome or (ATTEMPT_SUCCEEDED if ok else ATTEMPT_FAILED),
                  error=("" if ok else error)[:10_000])
    closing = TaskAttempt(pk=attempt_id, **fields)
    return prepared_sql.update(closing, list(fields), outcome=ATTEMPT_RUNNING) == 1


# --- what the service calls after a report ------------------------------------------------------------


def note_reports(event: str, source: str, actor: str, before, after, retired, rows: Iterable[Task],
                 description: str | None) -> None:
    """Close or create the attempt of a task a report changed, unless the report came from its job.

    A job records its own attempts, so worker reports cost nothing here. `before`/`after` are the
    engine snapshots, `retired` the outcome's retired instances, `rows` the task rows involved.
    """
    if event not in (TASK_COMPLETED, TASK_ERROR) or source == "worker":
        return
    old = {t.id: t.status for t in before.tasks}
    rows = {row.id: row for row in rows}
    for inst in (*after.tasks, *retired):
        if inst.id in old and inst.status != old[inst.id] and inst.status in (SATISFIED, ERROR) and inst.id in rows:
            _close_or_create(rows[inst.id], ok=inst.status == SATISFIED, error=inst.error or description or "",
                             actor=actor)
            return


def _close_or_create(task: Task, *, ok: bool, error: str, actor: str) -> None:
    now = timezone.now()
    lost = actor == LIVENESS_ACTOR
    outcome = ATTEMPT_SUCCEEDED if ok else (ATTEMPT_LOST if lost else ATTEMPT_FAILED)
    closed = TaskAttempt.objects.filter(task=task, outcome=ATTEMPT_RUNNING).update(
        finished_at=now, outcome=outcome, error="" if ok else error[:10_000])
    if closed or lost or task.executor != "external":
        return  # a job's own attempt is the record of a task that runs; only external tasks have none
    TaskAttempt.objects.create(
        task=task, stack_id=task.stack_id, state=task.state, task_name=task.name, executor=task.executor,
        number=task.attempts + 1, queued_at=task.created_at, started_at=task.created_at, finished_at=now,
        outcome=outcome, error="" if ok else error[:10_000], actor=actor[:200],
    )
    task.attempts += 1
    Task.objects.filter(pk=task.pk).update(attempts=task.attempts)


# --- reading ------------------------------------------------------------------------------------------------


def for_stack(stack, *, state: str = "", name: str = "", outcome: str = "") -> QuerySet[TaskAttempt]:
    """A stack's attempts, newest first, optionally of one state, task name or outcome."""
    attempts = TaskAttempt.objects.filter(stack=stack)
    if state:
        attempts = attempts.filter(state=state[:63])
    if name:
        attempts = attempts.filter(task_name=name[:63])
    if outcome:
        attempts = attempts.filter(outcome=outcome[:10])
    return attempts.order_by("-started_at", "-id")


def lines_since(attempt: TaskAttempt, since: int) -> tuple[list[str], int]:
    """The kept lines numbered above `since` (1-based, absolute), and the number of the last line.

    When lines after `since` were dropped, a note saying how many comes first.
    """
    kept = attempt.output.split("\n") if attempt.output else []
    first = attempt.dropped_lines + 1  # number of kept[0]
    lines = kept[max(0, since - first + 1):]
    missing = max(0, attempt.dropped_lines - since)
    if missing:
        lines = [dropped_note(missing), *lines]
    return lines, attempt.line_count


def full_text(attempt: TaskAttempt) -> str:
    lines, _ = lines_since(attempt, 0)
    return "\n".join(lines)


# --- retention ------------------------------------------------------------------------------------------------


def prune(days: int | None = None, now=None) -> int:
    """Delete finished attempts older than the retention (CLOUDSEAM_ATTEMPT_RETENTION_DAYS)."""
    days = settings.CLOUDSEAM_ATTEMPT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = TaskAttempt.objects.filter(finished_at__lt=cutoff).exclude(outcome=ATTEMPT_RUNNING).delete()
    return deleted


def close_abandoned(now=None) -> int:
    """Close as `cancelled` the running attempts of task instances the stack left (it moved on, a
    retry replaced them, or it was removed) whose job stopped beating without reporting: the
    liveness check only fails current tasks, so nothing else would ever close them."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.CLOUDSEAM_TASK_LOST_AFTER)
    stale_beat = Q(task__heartbeat_at__lt=cutoff) | Q(task__heartbeat_at__isnull=True)
    abandoned = TaskAttempt.objects.filter(outcome=ATTEMPT_RUNNING, started_at__lt=cutoff).filter(
        Q(task__isnull=True) | ((Q(task__current=False) | Q(stack__removed_at__isnull=False)) & stale_beat))
    return abandoned.update(outcome=ATTEMPT_CANCELLED, finished_at=now or timezone.now(),
                            error="the stack left this task while it ran, and its job never reported")
