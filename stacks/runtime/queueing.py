"""Task instances to RQ jobs: one job per instance, named after it, enqueued and cancelled.

Only `stacks.effects` calls this, after commit. The job path is `stacks.runtime.jobs.run_task`;
`stacks.jobs` stays importable for jobs queued under the old path before an upgrade.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import django_rq
from django.conf import settings
from rq.job import Job

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
    """The task queue, on this process's one Redis client: `django_rq.get_queue` makes a new client
    (a new connection, and its hand-shake) on every call, that is for every event that enqueues."""
    config = settings.RQ_QUEUES[QUEUE]
    return django_rq.get_queue(QUEUE, connection=_connection(os.getpid(), repr(sorted(config.items()))))


@functools.cache
def _connection(pid: int, config: str):
    """One client per process and queue configuration; redis-py clients are thread-safe."""
    return django_rq.get_connection(QUEUE)


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
    """One RQ job per task instance, all in one Redis round trip; external tasks wait for the API."""
    runnable = [j for j in jobs if j.executor != "external"]
    if not runnable:
        return
    queue = get_queue()
    datas = [
        queue.prepare_data(RUN_TASK, (job.task_id,), job_id=job_id(job.task_id), timeout=job.job_timeout,
                           result_ttl=600, failure_ttl=86400)
        for job in runnable
    ]
    try:
        queue.enqueue_many(datas)
    except Exception:  # noqa: BLE001 - the tasks stay PENDING and can be retried from the UI
        log.exception("could not enqueue tasks %s; retry pending tasks to run them",
                      ", ".join(j.task_id for j in runnable))


def cancel(task_ids: tuple[str, ...] | list[str]) -> None:
    """Drop queued jobs of task instances that are no longer current (best effort, in the background).

    A stale job that runs anyway is harmless (its claim finds the task no longer current), so the
    request does not wait for this: one thread per process does it, in two Redis round trips.
    """
    if task_ids:
        _canceller().submit(_cancel_now, list(task_ids))


@functools.cache
def _canceller_for(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudseam-cancel")


def _canceller() -> ThreadPoolExecutor:
    return _canceller_for(os.getpid())  # a forked process gets its own thread


def _cancel_now(task_ids: list[str]) -> None:
    try:
        queue = get_queue()
        ids = [job_id(t) for t in task_ids]
        with queue.connection.pipeline(transaction=False) as pipe:
            for one in ids:
                pipe.hget(Job.key_for(one), "status")
            statuses = pipe.execute()
        queued = [one for one, status in zip(ids, statuses, strict=True) if status in (b"queued", "queued")]
        if not queued:
            return
        jobs = [job for job in Job.fetch_many(queued, connection=queue.connection, serializer=queue.serializer)
                if job is not None]
        with queue.connection.pipeline() as pipe:
            for job in jobs:
                job.cancel(pipeline=pipe)
            pipe.execute()
    except Exception:  # noqa: BLE001 - a stale job that still runs is ignored when it reports
        log.warning("could not cancel stale jobs", exc_info=True)
