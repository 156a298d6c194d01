"""Metric families read from Redis: RQ queues, failed jobs and live workers (see rq_state)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import redis
from prometheus_client.core import GaugeMetricFamily, Metric

from stacks.observability import rq_state


def queue_families(client: redis.Redis, now: datetime) -> Iterator[Metric]:
    depth = GaugeMetricFamily("cloudseam_queue_jobs", "Jobs waiting in an RQ queue.", labels=["queue"])
    oldest = GaugeMetricFamily("cloudseam_queue_oldest_job_age_seconds",
                               "How long the oldest waiting job has waited (0: the queue is empty).", labels=["queue"])
    failed = GaugeMetricFamily("cloudseam_queue_failed_jobs", "Jobs in RQ's failed job registry (kept 24 h).",
                               labels=["queue"])
    for name in rq_state.queue_names():
        stats = rq_state.queue_stats(client, name, now)
        depth.add_metric([name], stats.depth)
        oldest.add_metric([name], stats.oldest_age)
        failed.add_metric([name], stats.failed)
    yield from (depth, oldest, failed)


def worker_families(client: redis.Redis, now: datetime) -> Iterator[Metric]:
    beats = rq_state.workers(client, now)
    live = GaugeMetricFamily("cloudseam_workers_live",
                             f"Workers with a heartbeat in the last {rq_state.STALE_AFTER} s.")
    live.add_metric([], sum(1 for beat in beats if beat.live))
    age = GaugeMetricFamily("cloudseam_worker_heartbeat_age_seconds",
                            "Seconds since each registered worker's last heartbeat.", labels=["worker"])
    for beat in beats:
        age.add_metric([beat.name], beat.heartbeat_age)
    yield from (live, age)


def collect(client: redis.Redis, now: datetime) -> Iterator[Metric]:
    yield from queue_families(client, now)
    yield from worker_families(client, now)
