"""The one way a change reaches the world outside its transaction: after commit, never before.

Enqueueing before commit would let a fast worker read the old row (or none); publishing before
commit would show browsers a change that may still roll back. Every change — applied, ignored or
rejected — schedules its effects here, so they all reach the live layer by the same route.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from stacks.live import publish
from stacks.notifications import jobs as notification_jobs
from stacks.runtime import queueing


def after_commit(stack_key: str, *, event: dict, snapshot: dict | None = None,
                 jobs: Iterable[queueing.JobSpec] = (), cancelled: Iterable[str] = ()) -> None:
    """Schedule what follows a history entry: jobs to cancel and run, and the live update.

    With a `snapshot` the stack changed (or was looked at again) and all its watchers hear of it;
    without one only the stack's own page is told about the history entry (a rejected event).
    """
    jobs, cancelled = list(jobs), list(cancelled)

    def run() -> None:
        queueing.cancel(cancelled)
        queueing.enqueue(jobs)
        if snapshot is not None:
            publish.publish_stack(snapshot, event)
        else:
            publish.publish_history(stack_key, event)

    transaction.on_commit(run)


def after_commit_notifications(delivery_ids: list[int]) -> None:
    """Start the jobs of notification deliveries recorded in this transaction, once it commits."""
    ids = list(delivery_ids)
    transaction.on_commit(lambda: notification_jobs.enqueue(ids))
