"""What Redis says about the work: queue depth, oldest waiting job, failed jobs, live workers.

A worker counts as live when RQ still lists it for the queue and its heartbeat is recent.
CloudSeam's worker beats every 10 s, even during a long job (stacks.runtime.worker), so a heartbeat older
than STALE_AFTER means the process is gone even though RQ keeps its record for a few more minutes.
Every figure costs a fixed number of Redis calls, never one per job or per worker.

Workers are read from RQ's registry keys, not through `Worker.all()`: building a Worker object
raises its connection's socket timeout to ~7 minutes, which would let a frozen Redis hang a probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from rq import Queue, Worker, worker_registration
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.utils import utcparse

STALE_AFTER = 60  # seconds without a heartbeat before a listed worker counts as dead


@dataclass(frozen=True)
class WorkerBeat:
    name: str
    heartbeat_age: float  # seconds

    @property
    def live(self) -> bool:
        return self.heartbeat_age <= STALE_AFTER


@dataclass(frozen=True)
class QueueStats:
    name: str
    depth: int
    oldest_age: float  # seconds the oldest waiting job has waited; 0 when the queue is empty
    failed: int


def queue_names() -> list[str]:
    return list(settings.RQ_QUEUES)


def workers(client: redis.Redis, now: datetime) -> list[WorkerBeat]:
    """Every worker RQ lists for CloudSeam's queues, with its heartbeat age (two round trips)."""
    keys = sorted(set().union(*(worker_registration.get_keys(queue=Queue(name, connection=client))
                                for name in queue_names())))
    with client.pipeline(transaction=False) as pipeline:
        for key in keys:
            pipeline.hmget(key, "last_heartbeat", "death")
        rows = pipeline.execute()
    prefix = Worker.redis_worker_namespace_prefix
    beats = []
    for key, (heartbeat, death) in zip(keys, rows, strict=True):
        if death is not None or heartbeat is None:
            continue  # stopped cleanly, or its record expired: not a worker any more
        age = max(0.0, (now - utcparse(heartbeat.decode())).total_seconds())
        beats.append(WorkerBeat(key.removeprefix(prefix), age))
    return beats


def queue_stats(client: redis.Redis, name: str, now: datetime) -> QueueStats:
    queue = Queue(name, connection=client)
    oldest = queue.get_job_ids(0, 1)
    age = 0.0
    if oldest:
        enqueued = client.hget(Job.key_for(oldest[0]), "enqueued_at")
        if enqueued:
            age = max(0.0, (now - utcparse(enqueued.decode())).total_seconds())
    return QueueStats(name=name, depth=queue.count, oldest_age=age,
                      failed=FailedJobRegistry(queue=queue).count)
