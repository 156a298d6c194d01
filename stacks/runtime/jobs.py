"""RQ job bodies. A job gets a task-instance id, never a model instance, and reports its result
through `stacks.services.handle_event` like every other sender.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from machines_app.spec.model import TASK_COMPLETED, TASK_ERROR
from stacks import attempts
from stacks.live import publish as live
from stacks.models import PENDING, Task
from stacks.runtime.executors import TaskContext, TaskResult
from stacks.runtime.executors import run_task as run_executor
from stacks.services import send
from stacks.snapshots import stack_json

log = logging.getLogger(__name__)

OUTPUT_TAIL_LINES = 200
OUTPUT_FLUSH_SECONDS = 1.0


def _touch(task_id: str) -> None:
    Task.objects.filter(pk=task_id, status=PENDING).update(heartbeat_at=timezone.now())


class _Heartbeat:
    """Calls `beat` (by default: write heartbeat_at) every few seconds while the task runs, in its own thread."""

    def __init__(self, task_id: str, interval: float, beat: Callable[[str], None] = _touch):
        self.task_id, self.interval, self.beat = task_id, interval, beat
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{task_id}", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat(self.task_id)
            except Exception:  # noqa: BLE001 - one missed beat is tolerated; keep beating
                log.warning("heartbeat for task %s failed", self.task_id, exc_info=True)
                close_old_connections()
        close_old_connections()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _Output:
    """Keeps the last lines of a task's output, saves them now and then, and streams them live.

    The current attempt's own bounded copy (`stacks.attempts.OutputBuffer`) is saved with the same
    flush, so recording attempts adds no write per line.
    """

    def __init__(self, task: Task):
        self.task = task
        self.lines: list[str] = task.output_tail.splitlines()[-OUTPUT_TAIL_LINES:] if task.output_tail else []
        self.last_flush = 0.0
        self.lock = threading.Lock()
        self.attempt_id: int | None = None
        self.buffer = attempts.OutputBuffer()

    def start_attempt(self, number: int) -> None:
        """Close nothing, open a new attempt: its output starts empty."""
        with self.lock:
            self.attempt_id = attempts.start(self.task, number).pk
            self.buffer = attempts.OutputBuffer()

    def finish_attempt(self, result: TaskResult) -> None:
        if self.attempt_id is None:
            return
        with self.lock:
            attempts.finish(self.attempt_id, ok=result.ok, error=result.error or "", buffer=self.buffer)

    def add(self, lines: list[str]) -> None:
        if not lines:
            return
        lines = [line.replace("\x00", "\ufffd") for line in lines]  # PostgreSQL text cannot hold NUL
        with self.lock:
            self.lines = (self.lines + list(lines))[-OUTPUT_TAIL_LINES:]
            self.buffer.add(lines)
        live.publish_output(self.task.stack.key, self.task.id, list(lines))
        if time.monotonic() - self.last_flush > OUTPUT_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            text = "\n".join(self.lines)
            if self.attempt_id is not None:
                attempts.save_output(self.attempt_id, self.buffer)
        self.last_flush = time.monotonic()
        Task.objects.filter(pk=self.task.id).update(output_tail=text)


def _claim(task_id: str) -> Task | None:
    """Mark the task started, unless it is no longer current and pending (a stale job)."""
    now = timezone.now()
    # started_at IS NULL makes the claim exclusive: a job delivered twice runs its task once.
    claimable = Task.objects.filter(pk=task_id, current=True, status=PENDING, started_at__isnull=True,
                                    stack__removed_at__isnull=True)
    claimed = claimable.update(started_at=now, heartbeat_at=now, finished_at=None, attempts=F("attempts") + 1)
    if not claimed:
        return None
    return Task.objects.select_related("stack__machine", "stack__machine_version").get(pk=task_id)


def run_task(task_id: str) -> str:
    """Run one task instance with its executor, retrying as configured, then report the result."""
    if not connection.in_atomic_block:  # a worker between jobs; never inside a caller's transaction
        close_old_connections()
    task = _claim(task_id)
    if task is None:
        log.info("task %s is no longer pending; nothing to do", task_id)
        return "stale"
    stack = task.stack
    task_def = stack.machine_version.spec.tasks[task.name]
    output = _Output(task)
    snapshot = stack_json(stack)
    result = TaskResult(ok=False, error="the task did not run")
    with _Heartbeat(task_id, settings.CLOUDSEAM_TASK_HEARTBEAT), tempfile.TemporaryDirectory() as workdir:
        for attempt in range(task_def.retries + 1):
            if attempt:
                Task.objects.filter(pk=task_id).update(attempts=F("attempts") + 1)
            output.start_attempt(task.attempts + attempt)  # each try is an attempt of its own
            if attempt:
                output.add([f"--- retry {attempt} of {task_def.retries} after: {result.error}"])
            result = run_executor(_context(task, task_def, snapshot, output, workdir))
            if not result.waiting:
                output.finish_attempt(result)
            if result.ok:
                break
    output.flush()
    return _report(task, result)


def _context(task: Task, task_def, snapshot: dict, output: _Output, workdir: str) -> TaskContext:
    return TaskContext(
        task_id=task.id,
        task_name=task.name,
        executor=task_def.executor,
        config=task_def.config,
        stack=snapshot,
        timeout=task_def.timeout,
        on_output=output.add,
        python_prefixes=tuple(settings.CLOUDSEAM_PYTHON_PREFIXES),
        workdir=workdir,
    )


def _report(task: Task, result: TaskResult) -> str:
    if result.waiting:
        # Nothing left to watch here: the completion comes through the API (external systems).
        Task.objects.filter(pk=task.id).update(heartbeat_at=None)
        return "waiting"
    # The heartbeat stays until the report lands (handle_event clears it with the new status), so
    # a retry in between still sees this task as running and leaves it alone.
    Task.objects.filter(pk=task.id).update(finished_at=timezone.now())
    if result.ok:
        answer = send(task.stack.key, TASK_COMPLETED, task={"id": task.id}, actor="worker", source="worker")
    else:
        description = (result.error or "the task failed")[:10_000].replace("\x00", "\ufffd")
        answer = send(
            task.stack.key, TASK_ERROR, task={"id": task.id}, description=description,
            actor="worker", source="worker",
        )
    return answer.outcome
