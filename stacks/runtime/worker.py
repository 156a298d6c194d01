"""The RQ worker class CloudSeam runs: a SimpleWorker plus a liveness thread.

SimpleWorker runs jobs in its own process (no fork per job): ~4x the throughput of the forking
Worker (DESIGN §8) and no database connection shared across a fork. A task that could kill the
worker runs its real work in a child process (shell, python executors), and if the worker itself
dies anyway, the heartbeat stops and another worker's liveness thread fails the task within
about CLOUDSEAM_TASK_LOST_AFTER seconds; `serve` also restarts the dead worker.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from rq import SimpleWorker

from cloudseam_site.processes import die_with_parent

log = logging.getLogger(__name__)

REAP_INTERVAL = 10.0


def reap_interval() -> float:
    """Often enough that a lost task is noticed within about CLOUDSEAM_TASK_LOST_AFTER, at most every 10 s."""
    return max(1.0, min(REAP_INTERVAL, settings.CLOUDSEAM_TASK_LOST_AFTER / 3))


def _reap_forever(stop: threading.Event, worker=None) -> None:
    from stacks.observability.beat import beat
    from stacks.runtime.expiry import expire_stacks
    from stacks.runtime.liveness import fail_expired_waits, reap_lost_tasks, requeue_lost_jobs

    while not stop.wait(reap_interval()):
        if worker is not None:
            beat(worker)  # a fresh heartbeat for /readyz and the metrics
        try:
            close_old_connections()
            reap_lost_tasks()
            requeue_lost_jobs()
            fail_expired_waits()
            expire_stacks()  # stacks whose lifetime is over get their expiry event, once
        except Exception:  # noqa: BLE001 - keep checking; a database blip must not stop the thread
            log.warning("liveness check failed", exc_info=True)


BEAT_AGAIN_AFTER = 1.0  # seconds: RQ beats three times per job, the three within a millisecond


class CloudSeamWorker(SimpleWorker):
    """A SimpleWorker that spares Redis RQ's repeated bookkeeping between two jobs: its default
    heartbeat (which keeps the worker's record for worker_ttl + 60 s) goes out in one round trip and
    at most once a second, and the state it already wrote is not written again."""

    _beaten_at = 0.0  # time.monotonic() of the last default heartbeat; 0: a job's beat set another TTL since
    _state_written: str | None = None

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is not None:  # a job's own TTL (RQ's pipelined beat as a job starts): the next default one goes out
            self._beaten_at = 0.0
            return super().heartbeat(timeout, pipeline=pipeline)
        if pipeline is not None:  # part of RQ's own round trip (the suspension check)
            self._beaten_at = time.monotonic()
            return super().heartbeat(pipeline=pipeline)
        if time.monotonic() - self._beaten_at < BEAT_AGAIN_AFTER:
            return None
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(pipeline=pipe)
            pipe.execute()
        self._beaten_at = time.monotonic()
        return None

    def set_state(self, state, pipeline=None):
        if pipeline is None and state == self._state_written:
            self._state = state
            return
        super().set_state(state, pipeline=pipeline)
        self._state_written = state

    def work(self, *args, **kwargs):
        # Whatever the worker forks (RQ's scheduler with --with-scheduler) ends with it, even after a
        # kill -9: nothing of a dead worker may linger. Task programs run under their guard instead.
        os.register_at_fork(after_in_child=die_with_parent)
        stop = threading.Event()
        thread = threading.Thread(target=_reap_forever, args=(stop, self), name="cloudseam-liveness", daemon=True)
        thread.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
