"""Metric families read from the database: five aggregate queries per scrape, however many stacks.

Totals come from rows every process shares, so any web process answers the same. Task durations
cover the tasks that finished in the last DURATION_WINDOW (a gauge histogram: the figures can go
down as old tasks leave the window; use histogram_quantile on it directly, not rate()).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from stacks.models import Stack, StackEvent, Task

DURATION_WINDOW = timedelta(hours=24)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def stacks_by_state() -> Metric:
    family = GaugeMetricFamily("cloudseam_stacks", "Active stacks by machine and state.", labels=["machine", "state"])
    rows = Stack.objects.active().values("machine__name", "state").annotate(n=Count("id")).order_by()
    for row in rows:
        family.add_metric([row["machine__name"], row["state"]], row["n"])
    return family


def removed_stacks() -> Metric:
    family = CounterMetricFamily("cloudseam_stacks_removed", "Stacks removed since the start (their records stay).")
    family.add_metric([], Stack.objects.removed().count())
    return family


def tasks_by_status() -> Metric:
    family = GaugeMetricFamily("cloudseam_tasks", "Task instances (every dispatch and retry) by executor and status.",
                               labels=["executor", "status"])
    for row in Task.objects.values("executor", "status").annotate(n=Count("id")).order_by():
        family.add_metric([row["executor"], row["status"]], row["n"])
    return family


def _bucket_key(index: int) -> str:
    return f"le_{index}"


def task_durations(now: datetime) -> Metric:
    """One grouped query: a conditional count per bucket, the total and the sum, by executor."""
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    counts = {
        _bucket_key(i): Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    rows = (
        Task.objects.filter(finished_at__gte=now - DURATION_WINDOW, started_at__isnull=False)
        .annotate(duration=duration)
        .values("executor")
        .annotate(total=Count("id"), seconds=Sum("duration"), **counts)
        .order_by()
    )
    family = GaugeHistogramMetricFamily(
        "cloudseam_task_duration_seconds",
        f"Run time of task instances that finished in the last {DURATION_WINDOW.total_seconds() / 3600:.0f} h.",
        labels=["executor"],
    )
    for row in rows:
        buckets = [(floatToGoString(bound), row[_bucket_key(i)]) for i, bound in enumerate(DURATION_BUCKETS)]
        buckets.append(("+Inf", row["total"]))
        seconds = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
        family.add_metric([row["executor"]], buckets, gsum_value=seconds)
    return family


def events() -> Metric:
    family = CounterMetricFamily("cloudseam_events", "Event messages recorded, by outcome and source.",
                                 labels=["outcome", "source"])
    for row in StackEvent.objects.values("outcome", "source").annotate(n=Count("id")).order_by():
        family.add_metric([row["outcome"], row["source"]], row["n"])
    return family


def collect(now: datetime) -> Iterator[Metric]:
    yield stacks_by_state()
    yield removed_stacks()
    yield tasks_by_status()
    yield task_durations(now)
    yield events()
