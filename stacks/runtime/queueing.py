"""Task instances to RQ jobs: one job per instance, named after it, enqueued and cancelled.

Only `stacks.effects` calls this, after commit. The job path is `stacks.runtime.jobs.run_task`;
`stacks.jobs` stays importable for jobs queued under the old path before an upgrade.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import django_rq
from django.conf import settings

log = logging.getLogger(__name__)

QUEUE = "default"
RUN_TASK = "stacks.runtime.jobs.run_task"
JOB_MARGIN = 120  # seconds an RQ job may outlive its task's own timeouts


@dataclass(frozen=True)
class JobSpec:
    task_id: str
    executor: str
    job_timeout: int  # -1: no limit; liveness is then watched through heartbeats


def get_queue():
    return django_rq.get_queue(QUEUE)


def job_id(task_id: str) -> str:
    return f"task-{task_id}"


DEFAULT_TIMEOUT_SETTINGS = {
    "shell": "CLOUDSEAM_DEFAULT_TIMEOUT_SHELL",
    "python": "CLOUDSEAM_DEFAULT_TIMEOUT_PYTHON",
    "terraform": "CLOUDSEAM_DEFAULT_TIMEOUT_TERRAFORM",
    "http": "CLOUDSEAM_DEFAULT_TIMEOUT_HTTP",
}


def task_timeout(task_def) -> float | None:
    """The task's own `timeout`, else its executor's default from the settings (None: no limit)."""
    if task_def.timeout:
        return task_def.timeout
    name = DEFAULT_TIMEOUT_SETTINGS.get(task_def.executor)
    return (getattr(settings, name, 0) or None) if name else None


def default_timeout_setting(task_def) -> str | None:
    """The setting whose default timeout applies to this task, or None when the task sets its own."""
    return None if task_def.timeout else DEFAULT_TIMEOUT_SETTINGS.get(task_def.executor)


def job_for(task, task_def) -> JobSpec:
    timeout = task_timeout(task_def)
    if timeout:
        limit = int(timeout * (task_def.retries + 1)) + JOB_MARGIN
    else:
        limit = -1
    return JobSpec(task_id=task.id, executor=task.executor, job_timeout=limit)


def enqueue(jobs: list[JobSpec]) -> None:
    """One RQ job per task instance; external tasks wait for a completion through the API."""
    runnable = [j for j in jobs if j.executor != "external"]
    if not runnable:
        return
    queue = get_queue()
    for job in runnable:
        try:
            queue.enqueue(
                RUN_TASK,
                job.task_id,
                job_id=job_id(job.task_id),
                job_timeout=job.job_timeout,
                result_ttl=600,
                failure_ttl=86400,
            )
        except Exception:  # noqa: BLE001 - the task stays PENDING and can be retried from the UI
            log.exception("could not enqueue task %s; retry pending tasks to run it", job.task_id)


def cancel(task_ids: tuple[str, ...] | list[str]) -> None:
    """Drop queued jobs of task instances that are no longer current (best effort)."""
    if not task_ids:
        return
    try:
        queue = get_queue()
        for task_id in task_ids:
            job = queue.fetch_job(job_id(task_id))
            if job is not None and job.get_status(refresh=False) == "queued":
                job.cancel()
    except Exception:  # noqa: BLE001 - a stale job that still runs is ignored when it reports
        log.warning("could not cancel stale jobs", exc_info=True)
