"""Benchmark: the run record (issue #8) — a stack page with a long history, replay, and the event path.

Each figure is printed beside a reference measured in the same run, on the same machine:

- the stack page of a stack with 500 history entries and 2 000 task attempts (server time, goal
  ≤ 100 ms), beside the plain page of a stack with one entry and no attempts;
- replaying 1 000 history entries through `stacks.replay` (goal ≤ 200 ms), beside the same 1 000
  bare `engine.apply_event` calls;
- `handle_event` with attempt recording, beside the same events with `attempts.note_reports`
  switched off (recording must not slow the event path).

Uses a throw-away SQLite database in a temporary data folder (as bench_dashboard does). Run as
`.venv/bin/python benchmarks/bench_run_record.py`; `benchmarks/run.py` calls `main()`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import setup_django, viewer_client  # noqa: E402

HISTORY = 500
ATTEMPTS = 2000
REPLAYED = 1000
EVENT_RUNS = 300
RUNS = 7
PAGE_GOAL_MS = 100.0
REPLAY_GOAL_MS = 200.0
FIRST = [("TASK_COMPLETED", "cert-provision"), ("TASK_COMPLETED", "db-setup")]  # PROVISION → RUN
CYCLE = [("LAUNCH", None), ("TASK_COMPLETED", "deploy"), ("UPDATE_METADATA", None)]  # RUN → UPDATE → RUN


def send(stack_id: str, event: str, task: str | None = None, **extra):
    from stacks.services import handle_event

    message = {"stackId": stack_id, "event": event, **extra}
    if task:
        message["task"] = {"name": task}
    return handle_event(message, actor="bench", source="worker")


def build_history(stack_id: str, entries: int) -> None:
    """`entries` history entries: PROVISION → RUN → UPDATE → RUN … with metadata changes."""
    send(stack_id, "LAUNCH", machine="qa-env")
    for event, task in FIRST:
        send(stack_id, event, task)
    done = 1 + len(FIRST)
    while done < entries:
        for event, task in CYCLE:
            if done >= entries:
                break
            extra = {"metadata": {"tag": f"v{done}"}} if event == "UPDATE_METADATA" else {}
            send(stack_id, event, task, **extra)
            done += 1


def add_attempts(stack_id: str, count: int) -> None:
    """`count` finished attempts spread over the stack's life, each with 20 lines of output."""
    from django.utils import timezone

    from stacks.models import Stack, Task, TaskAttempt

    stack = Stack.objects.get(key=stack_id)
    tasks = list(Task.objects.filter(stack=stack))
    start = stack.created_at
    span = max((timezone.now() - start).total_seconds(), 1.0)
    output = "\n".join(f"step {i}: ok" for i in range(20))
    rows = []
    for i in range(count):
        task = tasks[i % len(tasks)]
        at = start + timedelta(seconds=span * i / count)
        rows.append(TaskAttempt(task=task, stack=stack, state=task.state, task_name=task.name, executor=task.executor,
                                number=1 + i % 3, queued_at=at, started_at=at, finished_at=at + timedelta(seconds=1),
                                outcome="failed" if i % 10 == 0 else "succeeded", output=output, line_count=20))
    TaskAttempt.objects.bulk_create(rows, batch_size=1000)


def median_ms(fn, runs: int = RUNS) -> float:
    fn()  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def page_figures(client) -> tuple[float, float]:
    def get(url):
        def fetch():
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
        return fetch

    return median_ms(get("/stacks/busy/")), median_ms(get("/stacks/plain/"))


def replay_figures() -> tuple[float, float]:
    """Replay of REPLAYED entries, and the same events as bare engine calls."""
    from machines_app.models import MachineVersion
    from stacks import engine, history, replay
    from stacks.models import Stack

    build_history("long", REPLAYED)
    stack = Stack.objects.select_related("machine", "machine_version").get(key="long")
    entries = history.entries(stack)
    machine = MachineVersion.objects.get(pk=stack.machine_version_id).spec
    first = stack.machine_version.number

    def replayed():
        replay.replay(entries, "long", lambda _number: machine, first)

    def bare():
        ids = iter(range(10**9))
        snapshot = engine.StackSnapshot(id="long", state=engine.INIT)
        for entry in entries:
            if entry.event == "UPDATE_METADATA" or entry.outcome != "applied":
                continue
            name = replay.task_name(entry.task)
            outcome = engine.apply_event(machine, snapshot, entry.event, task_ref={"name": name} if name else None,
                                         new_id=lambda: f"b{next(ids)}")
            snapshot = outcome.stack

    return median_ms(replayed), median_ms(bare)


def event_figures() -> tuple[float, float]:
    """Per-event time of handle_event (LAUNCH + a worker completion), with and without attempt recording."""
    from stacks import attempts

    counter = iter(range(10**9))

    def cycle():
        for _ in range(EVENT_RUNS // 3):
            key = f"ev-{next(counter)}"
            send(key, "LAUNCH", machine="qa-env")
            send(key, "TASK_COMPLETED", "cert-provision")
            send(key, "TASK_COMPLETED", "db-setup")

    original = attempts.note_reports
    cycle()  # warm-up
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(4):  # interleaved, so a drifting machine (or a growing database) hits both alike
        for recording in (True, False):
            attempts.note_reports = original if recording else (lambda *args, **kwargs: None)
            started = time.perf_counter()
            cycle()
            timings[recording].append((time.perf_counter() - started) * 1000 / EVENT_RUNS)
    attempts.note_reports = original
    with_recording, without = statistics.median(timings[True]), statistics.median(timings[False])
    return with_recording, without


def main() -> int:
    data_dir = tempfile.mkdtemp(prefix="cloudseam-bench-")
    try:
        setup_django(data_dir)
        from machines_app.services import save_machine
        from stacks import effects

        # No Redis here: after-commit effects (enqueue, publish) are the same for both sides of every
        # comparison, and waiting on a missing socket would only add noise.
        effects.after_commit = lambda *args, **kwargs: None

        save_machine("qa-env", (ROOT / "machines" / "qa-env.yml").read_text(), actor="bench")
        started = time.perf_counter()
        build_history("busy", HISTORY)
        add_attempts("busy", ATTEMPTS)
        send("plain", "LAUNCH", machine="qa-env")
        print(f"built {HISTORY} history entries and {ATTEMPTS} attempts in {time.perf_counter() - started:.1f} s")
        client = viewer_client()
        busy, plain = page_figures(client)
        over = busy > PAGE_GOAL_MS
        print(f"stack page, {HISTORY} entries + {ATTEMPTS} attempts: {busy:.0f} ms (goal {PAGE_GOAL_MS:.0f} ms); "
              f"reference, plain stack page: {plain:.0f} ms{'  OVER THE GOAL' if over else ''}")
        replayed, bare = replay_figures()
        over_replay = replayed > REPLAY_GOAL_MS
        over = over or over_replay
        print(f"replay of {REPLAYED} entries: {replayed:.1f} ms (goal {REPLAY_GOAL_MS:.0f} ms); reference, the same "
              f"events as bare engine.apply_event calls: {bare:.1f} ms{'  OVER THE GOAL' if over_replay else ''}")
        with_recording, without = event_figures()
        print(f"handle_event with attempt recording: {with_recording:.2f} ms per event; reference, recording "
              f"switched off: {without:.2f} ms per event")
        return 1 if over else 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
