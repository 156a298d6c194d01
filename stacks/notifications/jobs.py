"""The RQ side of notifications: one job per delivery, retried with backoff by RQ itself.

`enqueue` runs after commit (through `stacks.effects`). `deliver` makes one attempt, records its
answer on the delivery, and raises when another attempt is worth it, so that RQ's
`Retry(max, interval)` schedules the next one (workers run with the scheduler for that). The last
attempt, and answers not worth repeating (a refused URL, a 4xx), end the delivery as failed.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from rq import Retry

from stacks.notifications import targets
from stacks.notifications.models import FAILED, RETRYING, SENT, NotificationDelivery
from stacks.runtime import queueing

log = logging.getLogger(__name__)

QUEUE = "default"
DELIVER = "stacks.notifications.jobs.deliver"


class DeliveryFailed(Exception):
    """Raised by the job so that RQ retries it; the answer is already recorded."""


def job_id(delivery_id: int) -> str:
    return f"notify-{delivery_id}"


def enqueue(delivery_ids: list[int]) -> None:
    intervals = list(settings.CLOUDSEAM_NOTIFY_RETRY_INTERVALS)
    retry = Retry(max=len(intervals), interval=intervals) if intervals else None
    try:
        queue = queueing.get_queue()  # the process's one client (django_rq builds a new one per call)
        for pk in delivery_ids:
            queue.enqueue(DELIVER, pk, job_id=job_id(pk), retry=retry, job_timeout=120, result_ttl=600,
                          failure_ttl=86400)
    except Exception:  # noqa: BLE001 - the delivery stays pending and visible; "Send again" in the admin
        log.exception("could not enqueue notification deliveries %s", delivery_ids)


def deliver(delivery_id: int) -> str:
    """One attempt at one delivery; the delivery's status says what came of it."""
    if not connection.in_atomic_block:
        close_old_connections()
    delivery = NotificationDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (SENT, FAILED):
        return "done"
    attempt = delivery.attempts + 1
    answer = targets.send(delivery, attempt)
    last = attempt > len(settings.CLOUDSEAM_NOTIFY_RETRY_INTERVALS)
    status = SENT if answer.ok else (RETRYING if answer.retry and not last else FAILED)
    now = timezone.now()
    delivery.answers = [*delivery.answers, {"attempt": attempt, "at": now.isoformat(), "statusCode": answer.status_code,
                                            "error": answer.error or None, "durationMs": answer.duration_ms}]
    delivery.attempts, delivery.status, delivery.status_code = attempt, status, answer.status_code
    delivery.error, delivery.duration_ms = answer.error, answer.duration_ms
    delivery.finished_at = None if status == RETRYING else now
    delivery.save(update_fields=["answers", "attempts", "status", "status_code", "error", "duration_ms",
                                 "finished_at"])
    if status == RETRYING:
        raise DeliveryFailed(f"delivery {delivery_id} attempt {attempt}: {answer.error}")
    return status
