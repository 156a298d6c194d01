"""Task executors: one module per executor, one interface, one registry.

    result = run_task(TaskContext(task_id=..., task_name=..., executor="shell", config=..., stack=...,
                                  timeout=60, on_output=publish, python_prefixes=("myapp.tasks",)))

An executor is a callable `(TaskContext) -> TaskResult` that never raises for a task's own failure;
`run_task` adds the last safety net so that a bug in an executor still becomes a failed task with a
sentence, not a crashed job. Nothing here imports Django: the RQ job layer builds the context.
"""

from __future__ import annotations

import logging

from stacks.runtime.executors import external, http, lambda_invoke, python_call, shell, sleep, terraform
from stacks.runtime.executors.base import Executor, TaskContext, TaskResult

__all__ = ["REGISTRY", "SCRATCH_EXECUTORS", "Executor", "TaskContext", "TaskResult", "run_task"]

log = logging.getLogger(__name__)

REGISTRY: dict[str, Executor] = {
    "shell": shell.run,
    "http": http.run,
    "python": python_call.run,
    "terraform": terraform.run,
    "lambda": lambda_invoke.run,
    "external": external.run,
    "sleep": sleep.run,
}
SCRATCH_EXECUTORS = frozenset({"python", "terraform"})  # they make their scratch folders in ctx.workdir


def run_task(ctx: TaskContext) -> TaskResult:
    """Run ctx's task with its executor; every failure comes back as TaskResult(ok=False)."""
    executor = REGISTRY.get(ctx.executor)
    if executor is None:
        known = ", ".join(sorted(REGISTRY))
        return TaskResult(ok=False, error=f"unknown executor '{ctx.executor}'; known executors: {known}")
    try:
        return executor(ctx)
    except Exception as exc:
        log.exception("executor %s crashed on task %s", ctx.executor, ctx.task_id)
        return TaskResult(ok=False, error=f"the {ctx.executor} executor failed: {type(exc).__name__}: {exc}")
