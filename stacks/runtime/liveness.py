"""Finding tasks whose worker died, so no task stays PENDING forever.

A running job writes a heartbeat every few seconds. A task whose heartbeat is older than
CLOUDSEAM_TASK_LOST_AFTER is failed through `handle_event` like any other error, so it can be
retried. Every worker runs `reap_lost_tasks` periodically; each report is claimed first with a
compare-and-swap on the task row, so of several workers checking at once only one reports it (and
the engine ignores a repeated error report anyway).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
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


REPORT_WINDOW = 15  # seconds a won takeover keeps others off while its report lands


def reap_lost_tasks(now: datetime | None = None) -> int:
    """Fail every current PENDING task whose heartbeat stopped; returns how many were failed."""
    lost_after = settings.CLOUDSEAM_TASK_LOST_AFTER
    cutoff = (now or timezone.now()) - timedelta(seconds=lost_after)
    lost = list(
        Task.objects.filter(
            current=True, status=PENDING, heartbeat_at__lt=cutoff, stack__removed_at__isnull=True
        ).values_list("id", "stack__key", "heartbeat_at")
    )
    failed = 0
    for task_id, stack_key, seen in lost:
        if not _take_over(task_id, seen, lost_after):
            continue  # another worker's check got there first, or the task's own worker beat again
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


def _take_over(task_id: str, seen: datetime, lost_after: int) -> bool:
    """Compare-and-swap on the heartbeat this check saw: of several workers checking at once, exactly
    one wins the right to report the task lost (`UPDATE … WHERE heartbeat_at = seen`).

    The winner sets the heartbeat to just inside the lost window, so a check that lists the task a
    moment later does not take it over again while the report is on its way; should the report itself
    fail (a database blip), the task is lost again REPORT_WINDOW seconds later and tried once more.
    """
    claimed = timezone.now() - timedelta(seconds=lost_after) + timedelta(seconds=REPORT_WINDOW)
    return Task.objects.filter(pk=task_id, status=PENDING, heartbeat_at=seen).update(heartbeat_at=claimed) == 1


QUEUED_GRACE = 60  # seconds a dispatched task may wait before we check that its job still exists


def requeue_lost_jobs(now: datetime | None = None) -> int:
    """Deal with tasks that never started although their job should have run by now.

    Their job is gone (Redis lost data: a restart without persistence, an eviction) — it is enqueued
    again under the same task-instance id, nothing about the stack changes — or it failed before it
    could start the task (a database outage in the worker, say), or a worker took it and died before
    starting the task (its job sits "started", or in RQ's intermediate queue, with nobody behind it;
    RQ itself would notice only at its next maintenance, minutes later) — the task is failed with a
    sentence saying so, so nobody waits on it forever and it can be retried.
    """
    now = now or timezone.now()
    lost_after = settings.CLOUDSEAM_TASK_LOST_AFTER
    cutoff = now - timedelta(seconds=min(QUEUED_GRACE, lost_after))
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
        elif _abandoned(queue, job, now - timedelta(seconds=lost_after)):
            _fail_abandoned(task, job, lost_after)
    if missing:
        log.warning("re-enqueueing %d task(s) whose jobs were lost", len(missing))
        dispatch.enqueue(missing)
    return len(missing)


def _abandoned(queue, job: Job, since: datetime) -> bool:
    """A worker took this job before `since` but has not started its task: it died in between.

    A job that waits for a previous run of its task to end (see `jobs.run_task`) beats RQ's job
    heartbeat meanwhile, so it is not taken for abandoned.
    """
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        taken = max(filter(None, (job.started_at, job.last_heartbeat)), default=None)
        return taken is not None and _aware(taken) < since
    if status == JobStatus.QUEUED and job.id in queue.intermediate_queue.get_job_ids():
        queue.intermediate_queue.set_first_seen(job.id)  # no-op when already set
        first_seen = queue.intermediate_queue.get_first_seen(job.id)
        return first_seen is not None and first_seen < since
    return False


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fail_abandoned(task: Task, job: Job, lost_after: int) -> None:
    """Fail a task whose job's worker died before starting it — once, whoever else checks too."""
    now = timezone.now()
    # Compare-and-swap: setting started_at also fences off a late claim by the job, should its worker
    # only have been slow. The old heartbeat lets the heartbeat check retry should this report fail.
    taken = Task.objects.filter(pk=task.pk, status=PENDING, started_at__isnull=True).update(
        started_at=now, heartbeat_at=now - timedelta(seconds=2 * lost_after)
    )
    if not taken:
        return
    with suppress(Exception):
        job.cancel()  # so that RQ's own maintenance does not report it again later
    send(task.stack.key, TASK_ERROR, task={"id": task.id}, actor="liveness-check", source="system",
         description=(f"the worker that took this task's job ({job.worker_name or 'unknown'}) stopped before "
                      f"starting the task (nothing ran; noticed after {lost_after} s). Retry the task."))
    log.warning("task %s of stack %s: its worker died before starting it; marked ERROR", task.id, task.stack.key)


def _fail_unstarted(task: Task, job: Job) -> None:
    reason = (job.latest_result().exc_string if job.latest_result() else "") or ""
    last_line = reason.strip().splitlines()[-1] if reason.strip() else f"the job was {job.get_status(refresh=False)}"
    send(task.stack.key, TASK_ERROR, task={"id": task.id}, actor="liveness-check", source="system",
         description=f"the job for this task ended before the task started: {last_line[:500]}. Retry the task.")


def fail_expired_waits(now: datetime | None = None) -> int:
    """Fail the waiting tasks (external approvals, http callbacks) whose own `timeout` has passed.

    A waiting task without a `timeout` is never failed: past CLOUDSEAM_EXTERNAL_DEADLINE it is shown
    as overdue instead (`Task.overdue`, `overdue: true` in the snapshot). Returns how many failed.
    """
    now = now or timezone.now()
    waiting = (
        Task.objects.filter(current=True, status=PENDING, heartbeat_at__isnull=True, finished_at__isnull=True,
                            stack__removed_at__isnull=True)
        .filter(Q(executor="external") | Q(started_at__isnull=False))
        .select_related("stack__machine_version")
    )
    failed = 0
    for task in waiting:
        task_def = task.stack.machine_version.spec.tasks.get(task.name)
        timeout = task_def.timeout if task_def else None
        if not timeout or now - task.waiting_since < timedelta(seconds=timeout):
            continue
        # Compare-and-swap: one checker reports it; a completion arriving meanwhile wins instead.
        if not Task.objects.filter(pk=task.pk, status=PENDING, finished_at__isnull=True).update(finished_at=now):
            continue
        what = "approval" if task.executor == "external" else "callback"
        result = send(task.stack.key, TASK_ERROR, task={"id": task.id}, actor="liveness-check", source="system",
                      description=(f"no {what} arrived within the task's timeout of {timeout:g} s; complete it "
                                   "through the API or the page, or retry the task to wait again."))
        failed += result.outcome == "applied"
    return failed
