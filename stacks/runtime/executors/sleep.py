"""`sleep`: waits, then succeeds or fails at random. For demos and tests of the whole pipeline."""

from __future__ import annotations

import random
import time

from stacks.runtime.executors.base import TaskContext, TaskResult, emit, failure, format_seconds, timeout_error


def run(ctx: TaskContext) -> TaskResult:
    seconds = float(ctx.config.get("seconds", 1))
    fail = float(ctx.config.get("fail", 0) or 0)
    tail: list[str] = []
    emit(ctx, tail, f"sleeping for {format_seconds(seconds)} s")
    if ctx.timeout is not None and seconds > ctx.timeout:
        time.sleep(max(ctx.timeout, 0))
        return failure(timeout_error(ctx.timeout), tail)
    time.sleep(max(seconds, 0))
    # random() is in [0, 1), so fail: 1 always fails and fail: 0 never does.
    if random.random() < fail:
        emit(ctx, tail, "failing on purpose")
        return failure(f"sleep task failed on purpose (fail probability {fail})", tail)
    emit(ctx, tail, f"slept {format_seconds(seconds)} s")
    return TaskResult(ok=True, output_tail=tail)
