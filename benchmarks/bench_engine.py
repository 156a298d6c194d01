"""P0: the pure engine (no database): events per second for advance + two completions + a metadata merge.

Reference, when installed: the `transitions` package driving a machine of the same shape.
"""

from __future__ import annotations

import itertools
import time

from machines_app.spec import validate

SECONDS = 1.5
MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: BUSY}]
  BUSY:
    tasks: [a, b]
    on:
      NEXT: [{action: advance, state: RUN}]
  RUN:
    on:
      LAUNCH: [{action: advance, state: BUSY}]
  DONE:
    terminal: true
tasks:
  a: {executor: external}
  b: {executor: external}
"""


def engine_rate(seconds: float = SECONDS) -> float:
    """Events per second: each cycle is LAUNCH (advance), two TASK_COMPLETED (the second fires NEXT)."""
    from stacks import engine

    machine = validate(MACHINE).machine
    ids = itertools.count()

    def new_id() -> str:
        return f"t{next(ids)}"

    stack = engine.StackSnapshot(id="s", state="INIT")
    events = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            metadata = engine.merge_metadata(stack.metadata, {"n": events, "gone": None})
            stack = engine.StackSnapshot(id=stack.id, state=stack.state, previous_state=stack.previous_state,
                                         tasks=stack.tasks, metadata=metadata)
            stack = engine.apply_event(machine, stack, "LAUNCH", new_id=new_id).stack
            for task in stack.tasks:
                stack = engine.apply_event(machine, stack, "TASK_COMPLETED", task_ref={"id": task.id},
                                           new_id=new_id).stack
            events += 3
    return events / (time.perf_counter() - started)


def transitions_rate(seconds: float = SECONDS) -> float | None:
    """The same cycle with `transitions` (three triggers per cycle); None when it is not installed."""
    try:
        from transitions import Machine
    except ImportError:
        return None

    class Model:
        pass

    model = Model()
    Machine(model=model, states=["INIT", "BUSY", "HALF", "RUN"], initial="INIT", auto_transitions=False,
            transitions=[["launch", ["INIT", "RUN"], "BUSY"], ["done_a", "BUSY", "HALF"], ["done_b", "HALF", "RUN"]])
    events = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            model.launch()
            model.done_a()
            model.done_b()
            events += 3
    return events / (time.perf_counter() - started)


def measure(rounds: int = 6) -> dict:
    """Both rates in alternating slices, so they share whatever else the machine is doing."""
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(engine_rate(SECONDS / rounds))
        other = transitions_rate(SECONDS / rounds)
        if other is not None:
            theirs.append(other)
    return {"engine": sum(ours) / len(ours), "transitions": sum(theirs) / len(theirs) if theirs else None}


if __name__ == "__main__":
    import cProfile
    import pstats
    import sys

    if "--profile" in sys.argv:
        cProfile.run("engine_rate(2)", "/tmp/engine.prof")
        pstats.Stats("/tmp/engine.prof").sort_stats("tottime").print_stats(20)
    print(measure())
