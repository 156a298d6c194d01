"""A worker's heartbeat, refreshed from CloudSeam's liveness thread (stacks.runtime.worker) every 10 s.

An idle RQ worker beats only every ~7 minutes and not at all during a job run in-process, so its
heartbeat age says little. Beating from the side thread lets /readyz and the metrics tell a dead
worker within a minute. RQ also never registers a worker again after Redis restarted without its
data: the worker keeps taking jobs but no longer appears anywhere; the beat puts its record back.
"""

from __future__ import annotations

import logging

from rq import worker_registration

log = logging.getLogger(__name__)


def beat(worker) -> None:
    """Refresh `worker`'s heartbeat, registering it again if Redis lost it; never raises."""
    try:
        # Checked by field: RQ's own heartbeat may already have re-created the key with nothing else in it.
        if worker.birth_date is not None and not worker.connection.hexists(worker.key, "birth"):
            with worker.connection.pipeline() as pipeline:
                pipeline.hset(worker.key, mapping={**worker.serialize(), "state": worker.get_state()})
                worker_registration.register(worker, pipeline)
                pipeline.execute()
            log.warning("worker %s was missing from Redis; registered it again", worker.name)
        worker.heartbeat()
    except Exception:  # noqa: BLE001 - Redis may be away for a moment; the next beat tries again
        log.warning("worker heartbeat failed", exc_info=True)
