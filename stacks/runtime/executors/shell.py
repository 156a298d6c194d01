"""`shell`: runs an argv list (despite the name, never through a shell).

The program gets the worker's environment plus the config's `env` plus CLOUDSEAM_* variables that
describe the stack, metadata included as one JSON string. Nothing from the stack ever becomes part
of the command line, so a metadata value like `$(rm -rf /)` is only ever data.
"""

from __future__ import annotations

from stacks.runtime.executors.base import TaskContext, TaskResult, failure, task_environment
from stacks.runtime.executors.process import ProcessStartError, run_process


def run(ctx: TaskContext) -> TaskResult:
    command = ctx.config.get("command") or []
    if isinstance(command, str):
        return failure("command must be a list of argv strings, not one string (no shell parses it)")
    argv = [str(part) for part in command]
    cwd = ctx.config.get("cwd")
    env = task_environment(ctx, ctx.config.get("env"))
    try:
        outcome = run_process(
            argv, env=env, cwd=str(cwd) if cwd else None, timeout=ctx.timeout, on_output=ctx.on_output,
            lease=ctx.lease,
        )
    except ProcessStartError as exc:
        return failure(str(exc))
    error = outcome.error("command", ctx.timeout)
    if error:
        return failure(error, outcome.tail)
    return TaskResult(ok=True, output_tail=outcome.tail)
