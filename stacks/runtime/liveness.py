"""Finding tasks whose worker died, so no task stays PENDING forever.

A running job writes a heartbeat every few seconds. A task whose heartbeat is older than
CLOUDSEAM_TASK_LOST_AFTER is failed through `handle_event` like any other error, so it can be
retried. Every worker runs `reap_lost_tasks` periodically; it is idempotent (the engine ignores an
error for a task that is no longer PENDING), so several workers doing it at once is harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from machines_app.spec.model import TASK_ERROR
from stacks.models import PENDING, Task
from stacks.runtime import queueing as dispatch
from stacks.services import send

log = logging.getLogger(__name__)


def lost_message(seconds: int) -> str:
    return (
        f"the worker running this task stopped responding (no heartbeat for {seconds} s); it was probably "
        "killed or its machine went away. Retry the task to run it again."
    )


def reap_lost_tasks(now: datetime | None = None) -> int:
    """Fail every current PENDING task whose heartbeat stopped; returns how many were failed."""
    lost_after = settings.CLOUDSEAM_TASK_LOST_AFTER
    cutoff = (now or timezone.now()) - timedelta(seconds=lost_after)
    lost = list(
        Task.objects.filter(
            current=True, status=PENDING, heartbeat_at__lt=cutoff, stack__removed_at__isnull=True
        ).values_list("id", "stack__key")
    )
    failed = 0
    for task_id, stack_key in lost:
        result = send(
            stack_key,
            TASK_ERROR,
            task={"id": task_id},
            description=lost_message(lost_after),
            actor="liveness-check",
            source="system",
        )
        if result.ok and result.outcome == "applied":
            failed += 1
            log.warning("task %s of stack %s lost its worker; marked ERROR", task_id, stack_key)
    return failed


QUEUED_GRACE = 60  # seconds a dispatched task may wait before we check that its job still exists


def requeue_lost_jobs(now: datetime | None = None) -> int:
    """Deal with tasks that never started although their job should have run by now.

    Their job is gone (Redis lost data: a restart without persistence, an eviction) — it is enqueued
    again under the same task-instance id, nothing about the stack changes — or it failed before it
    could start the task (a database outage in the worker, say) — the task is failed with the job's
    own error, so nobody waits on it forever and it can be retried.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=QUEUED_GRACE)
    waiting = (
        Task.objects.filter(current=True, status=PENDING, started_at__isnull=True, created_at__lt=cutoff,
                            stack__removed_at__isnull=True)
        .exclude(executor="external")
        .select_related("stack__machine_version")
    )
    queue = dispatch.get_queue()
    missing = []
    for task in waiting:
        try:
            job = Job.fetch(dispatch.job_id(task.id), connection=queue.connection)
        except NoSuchJobError:
            missing.append(dispatch.job_for(task, task.stack.machine_version.spec.tasks[task.name]))
            continue
        if job.get_status(refresh=False) in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            _fail_unstarted(task, job)
    if missing:
        log.warning("re-enqueueing %d task(s) whose jobs were lost", len(missing))
        dispatch.enqueue(missing)
    return len(missing)


def _fail_unstarted(task: Task, job: Job) -> None:
    reason = (job.latest_result().exc_string if job.latest_result() else "") or ""
    last_line = reason.strip().splitlines()[-1] if reason.strip() else f"the job was {job.get_status(refresh=False)}"
    send(task.stack.key, TASK_ERROR, task={"id": task.id}, actor="liveness-check", source="system",
         description=f"the job for this task ended before the task started: {last_line[:500]}. Retry the task.")
