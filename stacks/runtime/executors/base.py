"""The executor interface and the small helpers every executor shares.

Executors are plain Python with no Django: the RQ job layer turns settings and models into a
`TaskContext`, an executor turns the outside world's answer into a `TaskResult`. Keeping the types
here (and re-exporting them from the package) lets executor modules import them without a cycle.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

TAIL_LINES = 200
"""How many output lines a result keeps; the UI shows the tail, the live stream shows everything."""


def _discard(lines: list[str]) -> None:
    """Default output sink, so executors can always call ctx.on_output without checking."""


@dataclass
class TaskContext:
    """Everything an executor may know about the task it runs; all of it plain data."""

    task_id: str
    task_name: str
    executor: str
    config: Mapping
    stack: Mapping
    timeout: float | None
    on_output: Callable[[list[str]], None] = _discard
    python_prefixes: tuple[str, ...] = ()
    workdir: str | None = None
    lease: Any = None  # a guard.Lease: the run stops when the worker dies or stops renewing it


@dataclass
class TaskResult:
    """What happened. `waiting` means the completion arrives later through the API."""

    ok: bool
    error: str | None = None
    output_tail: list[str] = field(default_factory=list)
    waiting: bool = False


class Executor(Protocol):
    """An executor is any callable taking the context and returning a result; it never raises
    for task-level failures."""

    def __call__(self, ctx: TaskContext) -> TaskResult: ...


def failure(error: str, tail: list[str] | None = None) -> TaskResult:
    """A failed result with a sentence for people and whatever output we saw."""
    return TaskResult(ok=False, error=error, output_tail=list(tail or [])[-TAIL_LINES:])


def format_seconds(seconds: float) -> str:
    """`2` rather than `2.0`, `0.5` stays `0.5`: error texts read like a person wrote them."""
    return f"{seconds:g}"


def timeout_error(timeout: float | None) -> str:
    return f"timed out after {format_seconds(timeout or 0)} s"


def plain(value: Any) -> Any:
    """Turn frozen configs (MappingProxyType, tuples) into dicts and lists that json can write."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """JSON for anything a snapshot may hold; unknown objects (datetimes) become strings."""
    return json.dumps(plain(value), default=str)


def task_message(ctx: TaskContext) -> dict:
    """The task message of DESIGN §6.3. The task-instance `id` is included so that a remote system
    can report completion for exactly this run (a completion for an older run is then ignored)."""
    return {
        "task": {
            "id": ctx.task_id,
            "name": ctx.task_name,
            "executor": ctx.executor,
            "config": plain(ctx.config),
        },
        "stack": plain(ctx.stack),
    }


def env_value(value: Any) -> str:
    """Environment variables are strings; booleans are spelled the way shells and YAML expect."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return to_json(value) if isinstance(value, Mapping | list | tuple) else str(value)


WORKER_SECRETS = frozenset(
    {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CLOUDSEAM_CACHE_URL", "CLOUDSEAM_TEST_POSTGRES_URL"}
)


def task_environment(ctx: TaskContext, extra: Mapping | None = None) -> dict[str, str]:
    """The worker's environment, then the task's own `extra` variables, then the CLOUDSEAM_*
    facts about the stack. The facts come last so that a task cannot be told a wrong stack id;
    metadata travels only as data (one JSON string), never as part of a command line. CloudSeam's
    own secrets (the Django key, database and Redis URLs) are not passed on: a task is code from a
    machine file, and it has no business reading the control plane's credentials."""
    env = {k: v for k, v in os.environ.items() if k not in WORKER_SECRETS}
    env.update({str(key): env_value(value) for key, value in (extra or {}).items()})
    stack = ctx.stack
    env.update(
        {
            "CLOUDSEAM_STACK_ID": env_value(stack.get("id")),
            "CLOUDSEAM_MACHINE": env_value(stack.get("machine")),
            "CLOUDSEAM_STATE": env_value(stack.get("state")),
            "CLOUDSEAM_PREVIOUS_STATE": env_value(stack.get("previousState")),
            "CLOUDSEAM_TASK": ctx.task_name,
            "CLOUDSEAM_TASK_ID": str(ctx.task_id),
            "CLOUDSEAM_METADATA": to_json(stack.get("metadata") or {}),
        }
    )
    return env


def emit(ctx: TaskContext, tail: list[str], *lines: str) -> None:
    """For executors without a subprocess: remember lines for the result and stream them live."""
    tail.extend(lines)
    del tail[:-TAIL_LINES]
    send_output(ctx.on_output, list(lines))


def send_output(sink: Callable[[list[str]], None], lines: list[str]) -> None:
    """Live output is a courtesy: a broken stream (Redis away) must not fail the task itself."""
    try:
        sink(lines)
    except Exception:
        log.warning("could not stream %d output lines", len(lines), exc_info=True)
