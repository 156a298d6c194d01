"""Readiness: can this process serve? The database, Redis and at least one live worker must answer.

Each check runs in its own thread and gets CHECK_TIMEOUT seconds; one that does not finish in time,
or fails in any unexpected way, is reported as failing with a sentence naming the part. The probe
itself never hangs and never raises.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connections

from stacks.observability import rq_state
from stacks.observability.connections import describe_error, probe_redis, redis_label

log = logging.getLogger(__name__)

OK = "ok"
CHECK_TIMEOUT = 3.0  # seconds; the Redis client itself gives up after 2


def check_database() -> str:
    """A round trip on a fresh connection of this thread (closed afterwards: threads are short-lived)."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"the database ({connection.vendor}) did not answer: {describe_error(exc)}"
    finally:
        connection.close()
    return OK


def check_redis() -> str:
    try:
        probe_redis().ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis at {redis_label()} did not answer: {describe_error(exc)}"
    return OK


def check_workers() -> str:
    try:
        beats = rq_state.workers(probe_redis(), datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001
        return f"could not list workers: Redis at {redis_label()} did not answer: {describe_error(exc)}"
    if any(beat.live for beat in beats):
        return OK
    if not beats:
        return "no live worker: no worker is registered in Redis; start one with `manage.py rqworker` or `serve`"
    return f"no live worker: the last heartbeat was {_ago(min(beat.heartbeat_age for beat in beats))}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "workers": check_workers,
}


def run_checks(timeout: float = CHECK_TIMEOUT) -> dict[str, str]:
    """Every check at once, each "ok" or a sentence; a check still running after `timeout` fails."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="cloudseam-readyz")
    futures = {name: pool.submit(check) for name, check in CHECKS.items()}
    concurrent.futures.wait(futures.values(), timeout=timeout)
    pool.shutdown(wait=False, cancel_futures=True)
    return {name: _outcome(name, future, timeout) for name, future in futures.items()}


def _outcome(name: str, future: concurrent.futures.Future, timeout: float) -> str:
    if not future.done():
        return f"the {name} check did not finish within {timeout:.0f} s"
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a bug in a check is that check failing, not a 500
        log.warning("readiness check %s failed", name, exc_info=True)
        return f"the {name} check failed: {describe_error(exc)}"
