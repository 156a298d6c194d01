"""The JSON shapes of DESIGN §6.2: one place builds them for the API, live updates and jobs."""

from __future__ import annotations

from collections.abc import Iterable

from cloudseam_site.api import iso
from stacks.lifetimes import expiry_of
from stacks.models import Stack, StackEvent, Task, TaskAttempt


def task_json(task: Task) -> dict:
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status,
        "phase": task.phase,
        "errorMessage": task.error_message or None,
        "attempts": task.attempts,
        "executor": task.executor,
        "startedAt": iso(task.started_at),
        "finishedAt": iso(task.finished_at),
        "overdue": task.overdue(),
    }


def stack_json(stack: Stack, tasks: Iterable[Task] | None = None) -> dict:
    if tasks is None:
        tasks = stack.current_tasks()
    return {
        "id": stack.key,
        "machine": stack.machine.name,
        "machineVersion": stack.machine_version.number,
        "state": stack.state,
        "previousState": stack.previous_state,
        "tasks": [task_json(t) for t in tasks],
        "metadata": stack.metadata,
        "removed": stack.removed_at is not None,
        "createdAt": iso(stack.created_at),
        "updatedAt": iso(stack.updated_at),
        "removedAt": iso(stack.removed_at),
        "expiresAt": _expires_at(stack),
        "record": stack.pk,  # tells apart the stacks that used the same id; see /api/stacks/removed/<record>
        "seq": stack.seq,  # one more per applied change; a watcher that sees a gap asks for a snapshot
    }


def event_json(event: StackEvent) -> dict:
    return {
        "id": event.pk,
        "event": event.event,
        "source": event.source,
        "actor": event.actor,
        "outcome": event.outcome,
        "fromState": event.from_state,
        "toState": event.to_state,
        "error": event.error or None,
        "metadata": event.metadata,
        "task": event.task_ref or None,
        "createdAt": iso(event.created_at),
    }


def attempt_json(attempt: TaskAttempt, *, stack_key: str | None = None) -> dict:
    """One task attempt (GET /api/tasks/<id>); its output is read apart (…/output)."""
    return {
        "id": attempt.pk,
        "stack": stack_key if stack_key is not None else attempt.stack.key,
        "record": attempt.stack_id,
        "taskInstance": attempt.task_id,
        "state": attempt.state,
        "name": attempt.task_name,
        "executor": attempt.executor,
        "number": attempt.number,
        "outcome": attempt.outcome,
        "error": attempt.error or None,
        "actor": attempt.actor or None,
        "queuedAt": iso(attempt.queued_at),
        "startedAt": iso(attempt.started_at),
        "finishedAt": iso(attempt.finished_at),
        "durationSeconds": attempt.duration_seconds,
        "outputLines": attempt.line_count,
        "droppedLines": attempt.dropped_lines,
    }


def _expires_at(stack: Stack) -> str | None:
    if stack.removed_at is not None:
        return None
    expiry = expiry_of(stack)
    return iso(expiry.at) if expiry else None
