"""The Prometheus collector: reads the database and Redis at scrape time.

No in-process counters: several web and worker processes run at once, and each would count only
its own share. A source that fails (Redis away, say) is left out of that scrape and reported as
`cloudseam_metrics_source_up{source=…} 0`, so a scrape still answers instead of a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from stacks.observability import db_metrics, redis_metrics
from stacks.observability.connections import probe_redis

log = logging.getLogger(__name__)


def _database(now: datetime) -> Iterable[Metric]:
    return db_metrics.collect(now)


def _redis(now: datetime) -> Iterable[Metric]:
    return redis_metrics.collect(probe_redis(), now)


SOURCES: dict[str, Callable[[datetime], Iterable[Metric]]] = {"database": _database, "redis": _redis}


class CloudSeamCollector:
    """A prometheus_client custom collector; `describe` is empty so registering it runs no query."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        up = GaugeMetricFamily("cloudseam_metrics_source_up", "1 when this scrape could read the source.",
                               labels=["source"])
        for name, source in SOURCES.items():
            try:
                families = list(source(now))  # all of a source or none of it
            except Exception:  # noqa: BLE001 - a failing source is reported, never a 500
                log.warning("metrics: could not read the %s", name, exc_info=True)
                families = None
            up.add_metric([name], 0 if families is None else 1)
            yield from families or ()
        yield up


registry = CollectorRegistry(auto_describe=False)
registry.register(CloudSeamCollector())


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (0.0.4: what every Prometheus version reads; our names
    need none of 1.0.0's escaping, so the text is the same)."""
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
