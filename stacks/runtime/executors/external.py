"""`external`: nothing runs here. An approval or an outside system reports completion later
through the API or the UI, so the job only says "waiting"."""

from __future__ import annotations

from stacks.runtime.executors.base import TaskContext, TaskResult


def run(ctx: TaskContext) -> TaskResult:
    return TaskResult(
        ok=True,
        waiting=True,
        output_tail=[f"waiting for '{ctx.task_name}' to be completed through the API or the UI"],
    )
