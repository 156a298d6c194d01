"""RQ job bodies. A job gets a task-instance id, never a model instance, and reports its result
through `stacks.services.handle_event` like every other sender.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from rq import get_current_job

from cloudseam_site import prepared_sql
from cloudseam_site.strict_json import scrub
from machines_app.spec.model import TASK_COMPLETED, TASK_ERROR
from stacks import attempts
from stacks.live import publish as live
from stacks.models import PENDING, Task
from stacks.prepared import current_tasks_with_stack
from stacks.runtime import queueing
from stacks.runtime.executors import SCRATCH_EXECUTORS, TaskContext, TaskResult
from stacks.runtime.executors import run_task as run_executor
from stacks.runtime.executors.guard import Lease
from stacks.services import send
from stacks.snapshots import stack_json

log = logging.getLogger(__name__)

OUTPUT_TAIL_LINES = 200
OUTPUT_FLUSH_SECONDS = 1.0


LEASE_SHARE = 0.8  # a run stops by itself this far into CLOUDSEAM_TASK_LOST_AFTER without a heartbeat
WAIT_POLL_SECONDS = 1.0
LIVE_OUTPUT_SECONDS = 0.2  # a run's output lines reach its watchers in batches at most this late


def _touch(task_id: str) -> bool:
    """Write the heartbeat; False when the task is no longer ours to run (no longer PENDING)."""
    return Task.objects.filter(pk=task_id, status=PENDING).update(heartbeat_at=timezone.now()) == 1


class _Heartbeat:
    """Calls `beat` (by default: write heartbeat_at) every few seconds while the task runs, in its own thread.

    Each beat that lands renews the run's lease, which the guards of its processes hold (see
    executors/guard.py): a worker that cannot write its heartbeat stops its own run before the
    liveness check may declare the task lost and a retry may start it again. A beat that finds the
    task no longer PENDING (failed as lost, completed by hand) revokes the lease: the run stops now.
    In between, every LIVE_OUTPUT_SECONDS, `tick` runs (the run's waiting output goes out live).
    """

    def __init__(self, task_id: str, interval: float, beat: Callable[[str], bool | None] = _touch,
                 lease: Lease | None = None, tick: Callable[[], None] | None = None):
        self.task_id, self.interval, self.beat, self.tick = task_id, interval, beat, tick
        self.lease = lease or Lease(None)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{task_id}", daemon=True)

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self.stop.wait(self._wait(due)):
            if self.tick is not None:
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - live output is a courtesy; the beats must go on
                    log.warning("live output of task %s failed", self.task_id, exc_info=True)
            if time.monotonic() >= due:
                due = time.monotonic() + self.interval
                self._beat()
        close_old_connections()

    def _wait(self, due: float) -> float:
        left = max(0.0, due - time.monotonic())
        return left if self.tick is None else min(left, LIVE_OUTPUT_SECONDS)

    def _beat(self) -> None:
        since = time.monotonic()
        try:
            ours = self.beat(self.task_id)
        except Exception:  # noqa: BLE001 - one missed beat is tolerated; keep beating
            log.warning("heartbeat for task %s failed", self.task_id, exc_info=True)
            close_old_connections()
            return
        if ours is False:
            log.warning("task %s is no longer pending (failed as lost, or completed elsewhere); "
                        "stopping its run", self.task_id)
            self.lease.revoke()
        else:
            self.lease.renew(since)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _Output:
    """Keeps the last lines of a task's output, saves them now and then, and streams them live.

    The current attempt's own bounded copy (`stacks.attempts.OutputBuffer`) is saved with the same
    flush, so recording attempts adds no write per line; it is written only when it has lines the
    database has not seen. Live lines go out in batches (`publish`: the run's heartbeat thread calls it
    every LIVE_OUTPUT_SECONDS, and every save calls it), not one message per line.
    """

    def __init__(self, task: Task):
        self.task = task
        self.lines: list[str] = task.output_tail.splitlines()[-OUTPUT_TAIL_LINES:] if task.output_tail else []
        self.last_flush = time.monotonic()  # the first save after a second; a short task saves once, at the end
        self.lock = threading.Lock()
        self.attempt_id: int | None = None
        self.buffer = attempts.OutputBuffer()
        self.unsaved = False  # the buffer has lines its attempt row does not have yet
        self.unsent: list[str] = []  # lines not yet streamed live

    def start_attempt(self, number: int) -> None:
        """Close nothing, open a new attempt: its output starts empty."""
        with self.lock:
            self.attempt_id = attempts.start(self.task, number).pk
            self.buffer = attempts.OutputBuffer()
            self.unsaved = False

    def finish_attempt(self, result: TaskResult) -> None:
        if self.attempt_id is None:
            return
        with self.lock:
            if attempts.finish(self.attempt_id, ok=result.ok, error=result.error or "", buffer=self.buffer):
                self.unsaved = False  # its output went with it
        self.publish()

    def add(self, lines: list[str]) -> None:
        if not lines:
            return
        lines = [line.replace("\x00", "\ufffd") for line in lines]  # PostgreSQL text cannot hold NUL
        with self.lock:
            self.lines = (self.lines + list(lines))[-OUTPUT_TAIL_LINES:]
            self.buffer.add(lines)
            self.unsaved = True
            self.unsent.extend(lines)
        if time.monotonic() - self.last_flush > OUTPUT_FLUSH_SECONDS:
            self.flush()

    def publish(self) -> None:
        """Stream the lines added since the last call, in one message."""
        with self.lock:
            lines, self.unsent = self.unsent, []
        if lines:
            live.publish_output(self.task.stack.key, self.task.id, lines)

    def flush(self, **fields) -> None:
        """Save the output (with any other `fields` of the task row, in the same UPDATE)."""
        self.publish()
        with self.lock:
            text = "\n".join(self.lines)
            if self.attempt_id is not None and self.unsaved:
                attempts.save_output(self.attempt_id, self.buffer)
                self.unsaved = False
        self.last_flush = time.monotonic()
        prepared_sql.update(Task(pk=self.task.id, output_tail=text, **fields), ["output_tail", *fields])


def _earlier_run_alive(alive_since) -> Exists:
    """Another instance of the same task of the same stack still runs (a fresh heartbeat), e.g. the
    stack left the state and came back while the first run went on. Correlated with the outer task."""
    return Exists(
        Task.objects.filter(stack_id=OuterRef("stack_id"), name=OuterRef("name"), status=PENDING,
                            started_at__isnull=False, finished_at__isnull=True, heartbeat_at__gt=alive_since)
        .exclude(pk=OuterRef("pk"))
    )


@dataclass
class _Claimed:
    task: Task  # with its stack, machine and machine version
    current: list[Task]  # the stack's current tasks, for the snapshot the executor gets
    since: float  # time.monotonic() just before the claim: the run's lease starts there


def _claim(task_id: str) -> Task | None:
    claimed = _claim_run(task_id)
    return claimed.task if claimed else None


# The claim, in one statement that says who won: the task is current, pending and never started
# (started_at IS NULL makes it exclusive: a job delivered twice runs its task once), its stack is not
# removed, and no earlier instance of the same task of the same stack still runs (a fresh heartbeat,
# not finished: e.g. the stack left the state and came back while the first run went on). Written
# out rather than built by the ORM: building this query cost ~6x the CPU of sending it, on every task.
CLAIM_SQL = """
UPDATE stacks_task SET started_at = %(now)s, heartbeat_at = %(now)s, finished_at = NULL, attempts = attempts + 1
WHERE id = %(id)s AND "current" AND status = %(pending)s AND started_at IS NULL
  AND EXISTS (SELECT 1 FROM stacks_stack s WHERE s.id = stacks_task.stack_id AND s.removed_at IS NULL)
  AND NOT EXISTS (
    SELECT 1 FROM stacks_task t
    WHERE t.stack_id = stacks_task.stack_id AND t.name = stacks_task.name AND t.id <> stacks_task.id
      AND t.status = %(pending)s AND t.started_at IS NOT NULL AND t.finished_at IS NULL
      AND t.heartbeat_at > %(alive_since)s)
RETURNING stack_id
"""


def _claim_run(task_id: str) -> _Claimed | None:
    """Mark the task started (CLAIM_SQL), unless it is no longer ours to run or an earlier run of it is
    still alive; then load what the run needs in one read: the stack's current tasks (the task itself,
    and the snapshot's tasks) with the stack and its machine version."""
    since = time.monotonic()
    now = timezone.now()
    alive_since = now - timedelta(seconds=settings.CLOUDSEAM_TASK_LOST_AFTER)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"now": adapt(now), "id": task_id, "pending": PENDING,
                                   "alive_since": adapt(alive_since)})
        claimed = cursor.fetchall()
    if not claimed:
        return None
    rows = current_tasks_with_stack(claimed[0][0])
    task = next((row for row in rows if row.pk == task_id), None)
    if task is None:  # replaced between the two statements: it runs, and its report is ignored as stale
        task = (Task.objects.select_related("stack__machine", "stack__machine_version")
                .defer("stack__machine_version__yaml_text").get(pk=task_id))
    return _Claimed(task, rows, since)


def _previous_run_alive(task_id: str) -> bool:
    """Another instance of the same task of the same stack still runs (a fresh heartbeat)."""
    alive_since = timezone.now() - timedelta(seconds=settings.CLOUDSEAM_TASK_LOST_AFTER)
    return Task.objects.filter(_earlier_run_alive(alive_since), pk=task_id).exists()


def _claim_when_free(task_id: str) -> _Claimed | None:
    """Claim the task; never two live runs of one task: while an earlier run is alive, wait until it
    has ended or is known dead (its heartbeat stopped for CLOUDSEAM_TASK_LOST_AFTER; its own lease
    stopped it before that). Meanwhile RQ's job heartbeat is kept fresh, so the liveness check does
    not take this job for one whose worker died. None: the task is no longer ours to run (stale)."""
    job = get_current_job()
    announced = False
    while True:
        claimed = _claim_run(task_id)
        if claimed is not None:
            return claimed
        if not _previous_run_alive(task_id):
            return _claim_run(task_id)  # the earlier run may have ended in between; else the task is stale
        if not announced:
            log.info("task %s waits for the previous run of the same task to end", task_id)
            announced = True
        if job is not None:
            with suppress(Exception):
                job.heartbeat(datetime.now(UTC), ttl=int(settings.CLOUDSEAM_TASK_LOST_AFTER) * 2 + 60)
        time.sleep(WAIT_POLL_SECONDS)


def run_task(task_id: str) -> str:
    """Run one task instance with its executor, retrying as configured, then report the result."""
    if not connection.in_atomic_block:  # a worker between jobs; never inside a caller's transaction
        close_old_connections()
    claimed = _claim_when_free(task_id)
    if claimed is None:
        log.info("task %s is no longer pending; nothing to do", task_id)
        return "stale"
    task = claimed.task
    stack = task.stack
    task_def = stack.machine_version.spec.tasks[task.name]
    output = _Output(task)
    snapshot = stack_json(stack, claimed.current)
    result = TaskResult(ok=False, error="the task did not run")
    lease = Lease(settings.CLOUDSEAM_TASK_LOST_AFTER * LEASE_SHARE, since=claimed.since)
    heartbeat = _Heartbeat(task_id, settings.CLOUDSEAM_TASK_HEARTBEAT, lease=lease, tick=output.publish)
    with heartbeat, _workdir(task_def.executor) as workdir:
        for attempt in range(task_def.retries + 1):
            if lease.revoked:  # the task was failed as lost meanwhile: no more attempts here
                break
            if attempt:
                Task.objects.filter(pk=task_id).update(attempts=F("attempts") + 1)
            output.start_attempt(task.attempts + attempt)  # each try is an attempt of its own
            if attempt:
                output.add([f"--- retry {attempt} of {task_def.retries} after: {result.error}"])
            result = run_executor(_context(task, task_def, snapshot, output, workdir, lease))
            if not result.waiting:
                output.finish_attempt(result)
            if result.ok:
                break
    return _report(task, _explain_default_timeout(result, task_def), output)


def _workdir(executor: str):
    """A scratch folder for the run, removed after it, for the executors that make files there."""
    return tempfile.TemporaryDirectory() if executor in SCRATCH_EXECUTORS else nullcontext(None)


def _explain_default_timeout(result: TaskResult, task_def) -> TaskResult:
    """Say where a limit the machine never set came from, and how to change it."""
    setting = queueing.default_timeout_setting(task_def)
    if result.ok or not setting or "timed out after" not in (result.error or ""):
        return result
    hint = (f" (the default for {task_def.executor} tasks, {setting}; give the task a `timeout` "
            "in its machine to allow longer)")
    return TaskResult(ok=False, error=f"{result.error}{hint}", output_tail=result.output_tail)


def _context(task: Task, task_def, snapshot: dict, output: _Output, workdir: str, lease: Lease) -> TaskContext:
    return TaskContext(
        task_id=task.id,
        task_name=task.name,
        executor=task_def.executor,
        config=task_def.config,
        stack=snapshot,
        timeout=queueing.task_timeout(task_def),
        on_output=output.add,
        python_prefixes=tuple(settings.CLOUDSEAM_PYTHON_PREFIXES),
        workdir=workdir,
        lease=lease,
    )


def _report(task: Task, result: TaskResult, output: _Output) -> str:
    if result.waiting:
        # Nothing left to watch here: the completion comes through the API (external systems).
        output.flush(heartbeat_at=None)
        return "waiting"
    # The heartbeat stays until the report lands (handle_event clears it with the new status), so
    # a retry in between still sees this task as running and leaves it alone.
    output.flush(finished_at=timezone.now())  # output and finish time in one UPDATE
    if result.ok:
        answer = send(task.stack.key, TASK_COMPLETED, task={"id": task.id}, actor="worker", source="worker")
    else:
        description = scrub((result.error or "the task failed")[:10_000].replace("\x00", "\ufffd"))
        answer = send(
            task.stack.key, TASK_ERROR, task={"id": task.id}, description=description,
            actor="worker", source="worker",
        )
    return answer.outcome
