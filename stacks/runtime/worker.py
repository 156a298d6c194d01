"""The RQ worker class CloudSeam runs: a SimpleWorker plus a liveness thread.

SimpleWorker runs jobs in its own process (no fork per job): ~4x the throughput of the forking
Worker (DESIGN §8) and no database connection shared across a fork. A task that could kill the
worker runs its real work in a child process (shell, python executors), and if the worker itself
dies anyway, the heartbeat stops and another worker's liveness thread fails the task within
CLOUDSEAM_TASK_LOST_AFTER + REAP_INTERVAL seconds; `serve` also restarts the dead worker.
"""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections
from rq import SimpleWorker

log = logging.getLogger(__name__)

REAP_INTERVAL = 10.0


def _reap_forever(stop: threading.Event, worker=None) -> None:
    from stacks.observability.beat import beat
    from stacks.runtime.expiry import expire_stacks
    from stacks.runtime.liveness import reap_lost_tasks, requeue_lost_jobs

    while not stop.wait(REAP_INTERVAL):
        if worker is not None:
            beat(worker)  # a fresh heartbeat for /readyz and the metrics
        try:
            close_old_connections()
            reap_lost_tasks()
            requeue_lost_jobs()
            expire_stacks()  # stacks whose lifetime is over get their expiry event, once
        except Exception:  # noqa: BLE001 - keep checking; a database blip must not stop the thread
            log.warning("liveness check failed", exc_info=True)


class CloudSeamWorker(SimpleWorker):
    def work(self, *args, **kwargs):
        stop = threading.Event()
        thread = threading.Thread(target=_reap_forever, args=(stop, self), name="cloudseam-liveness", daemon=True)
        thread.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            stop.set()
