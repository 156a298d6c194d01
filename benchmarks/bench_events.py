"""P1/P2: `handle_event` on one (and two) processes beside a bare Django transaction on the same database.

Figures (each measured in a fresh child process pointed at the database under test):
- no-op event on an existing stack (lock, merge metadata, persist, record, publish after commit);
- advance into a state with 3 tasks (3 task rows, 3 jobs enqueued, the 3 previous ones cancelled);
- the reference: a bare Django transaction that locks a row, updates it and inserts a history row
  (and, for the advance, also inserts 3 task rows) — what Django itself costs per transaction.
Queries per event and CPU per event are printed beside the rates. Run through `benchmarks/run.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "2.5"))

MACHINE = """
version: 1
events: [LAUNCH, NOTE, WORK, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      NOTE: [{action: no-op}]
      WORK: [{action: advance, state: BUSY}]
      DESTROY: [{action: advance, state: GONE}]
  BUSY:
    tasks: [a, b, c]
    on:
      WORK: [{action: advance, state: BUSY}]
      NEXT: [{action: advance, state: RUN}]
  GONE:
    terminal: true
tasks:
  a: {executor: sleep, config: {seconds: 0}}
  b: {executor: sleep, config: {seconds: 0}}
  c: {executor: sleep, config: {seconds: 0}}
"""


def compare(calls: dict, seconds: float = SECONDS, rounds: int = 10) -> dict:
    """Run each of `calls` (name → call(i)) in alternating short slices for `seconds` each in total.

    Alternating makes the figures and their reference share whatever else the machine is doing at
    the time (the cores are shared), so their ratio holds even when the absolute rates wander.
    """
    totals = {name: [0, 0.0, 0.0] for name in calls}  # count, wall seconds, CPU seconds
    for call in calls.values():
        for i in range(20):  # warm-up: connections, caches
            call(-1 - i)
    for _ in range(rounds):
        for name, call in calls.items():
            total = totals[name]
            started, cpu = time.perf_counter(), time.process_time()
            while time.perf_counter() - started < seconds / rounds:
                call(total[0])
                total[0] += 1
            total[1] += time.perf_counter() - started
            total[2] += time.process_time() - cpu
    return {name: {"rate": c / wall, "cpu_ms": cpu * 1000 / c, "count": c} for name, (c, wall, cpu) in totals.items()}


def _queries(call, runs: int = 20) -> float:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        for i in range(runs):
            call(10_000 + i)
    return len(captured) / runs


def measure(kind: str, prefix: str) -> dict:
    """Runs in a child process whose environment points at the database (and Redis) to measure."""
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from machines_app.models import Machine
    from machines_app.services import save_machine
    from stacks.models import Stack, StackEvent, Task
    from stacks.services import handle_event

    if not Machine.objects.filter(name="bench").exists():
        save_machine("bench", MACHINE, actor="bench")
    stacks = [f"{prefix}-{i}" for i in range(20)]
    for key in stacks:
        handle_event({"stackId": key, "event": "LAUNCH", "machine": "bench"}, actor="bench", source="api")
        if kind == "advance":
            handle_event({"stackId": key, "event": "WORK"}, actor="bench", source="api")
    pks = list(Stack.objects.filter(key__in=stacks, removed_at__isnull=True).values_list("pk", flat=True))

    def event(i: int) -> None:
        name = "NOTE" if kind == "noop" else "WORK"
        result = handle_event({"stackId": stacks[i % 20], "event": name, "metadata": {"n": i}},
                              actor="bench", source="api")
        assert result.status == 200, result.body

    def bare(i: int) -> None:
        pk = pks[i % 20]
        with transaction.atomic():
            Stack.objects.select_for_update().filter(pk=pk).values_list("pk", flat=True).first()
            Stack.objects.filter(pk=pk).update(updated_at=timezone.now())
            StackEvent.objects.create(stack_id=pk, stack_key="bare", event="NOTE", source="bench", outcome="applied")
            if kind == "advance":
                Task.objects.bulk_create([Task(stack_id=pk, name=n, state="BUSY", executor="sleep", current=False)
                                          for n in "abc"])

    figures = compare({"event": event, "bare": bare})
    figures["event"]["queries"] = _queries(event)
    figures["bare"]["queries"] = _queries(bare)
    from stacks.live import publish

    if hasattr(publish, "flush"):
        publish.flush()
    return figures


def run_child(kind: str, prefix: str, env: dict) -> subprocess.Popen:
    code = f"import json; from benchmarks.bench_events import measure; print(json.dumps(measure({kind!r}, {prefix!r})))"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def collect(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(err[-3000:])
    return json.loads(out.strip().splitlines()[-1])


def measure_database(env: dict, tag: str) -> dict:
    """One process: no-op and advance; then two processes at once on different stacks (no-op)."""
    one = collect(run_child("noop", f"{tag}1", env))
    advance = collect(run_child("advance", f"{tag}a", env))
    pair = [run_child("noop", f"{tag}p{i}", env) for i in range(2)]
    two = [collect(p) for p in pair]
    return {"noop": one, "advance": advance, "two": two}


if __name__ == "__main__":
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings", "PYTHONPATH": str(ROOT)}
    print(json.dumps(measure_database(env, "x"), indent=1))
