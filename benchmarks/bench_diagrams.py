"""Benchmark: diagrams of a 300-state machine (DOT text, Mermaid text, SVG through dot).

Pages draw a machine on every stack view and the editor previews on each keystroke, so the text
must be cheap and the SVG render bounded. Prints one line per figure with its limit and exits
non-zero when a figure is over it. Run as ``.venv/bin/python benchmarks/bench_diagrams.py``; a
benchmarks runner can call ``main()``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from types import MappingProxyType

from machines_app import diagrams
from machines_app.spec import Action, Machine, State, TaskDef

STATES = 300
RUNS = 5
# Limits in milliseconds: text is built per request (and per editor keystroke), so it must stay
# far below a page's budget; one SVG render is a subprocess with a real layout, cached per
# machine version by the pages, so a couple of seconds is the worst acceptable.
LIMITS_MS = {"dot text": 100.0, "mermaid text": 100.0, "svg render (dot)": 2000.0}


def _advance(state: str) -> tuple[Action, ...]:
    return (Action(kind="advance", state=state),)


def _chain_state(i: int, count: int) -> State:
    """Chain state Si: NEXT to the following state, with tasks and side branches on some."""
    name = f"S{i}"
    following = f"S{i + 1}" if i < count else "DONE"
    tasks = tuple(f"task-{i}-{k}" for k in range(i % 3 + 1)) if i % 3 else ()
    on: dict[str, tuple[Action, ...]] = {"NEXT": _advance(following)}
    if i % 10 == 0:
        on["DESTROY"] = _advance("TEARDOWN")
    if i % 7 == 0 and i > 5:
        on["REDEPLOY"] = _advance(f"S{i - 5}")
    if i % 4 == 0:
        on["PING"] = (Action(kind="no-op"),)
    return State(name=name, tasks=tasks, on=MappingProxyType(on))


def build_machine(states: int = STATES) -> Machine:
    """A valid machine: INIT, a chain with branches back and to a teardown, two terminal states."""
    count = states - 3  # INIT, TEARDOWN and DONE besides the chain
    chain = [_chain_state(i, count) for i in range(1, count + 1)]
    all_states = [
        State(name="INIT", on=MappingProxyType({"LAUNCH": _advance("S1"), "DESTROY": _advance("TEARDOWN")})),
        *chain,
        State(name="TEARDOWN", terminal=True, tasks=("destroy-all",)),
        State(name="DONE", terminal=True),
    ]
    task_names = [t for s in all_states for t in s.tasks]
    return Machine(
        version=1,
        events=("LAUNCH", "DESTROY", "REDEPLOY", "PING"),
        states=MappingProxyType({s.name: s for s in all_states}),
        tasks=MappingProxyType({t: TaskDef(name=t, executor="sleep") for t in task_names}),
    )


def median_ms(work: Callable[[], object], runs: int = RUNS) -> float:
    """Median wall time of ``runs`` calls, after one warm-up call (imports, caches)."""
    work()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(machine: Machine) -> dict[str, float | None]:
    """Figures in ms; the SVG figure is None when Graphviz's dot is not installed."""
    highlight = "S150"
    status = {name: "PENDING" for name in machine.states[highlight].tasks}
    dot_source = diagrams.to_dot(machine, highlight, status)
    figures: dict[str, float | None] = {
        "dot text": median_ms(lambda: diagrams.to_dot(machine, highlight, status)),
        "mermaid text": median_ms(lambda: diagrams.to_mermaid(machine, highlight, status)),
        "svg render (dot)": None,
    }
    if diagrams.dot_available():
        figures["svg render (dot)"] = median_ms(lambda: diagrams.render_svg(dot_source, timeout=30), runs=3)
    return figures


def main() -> int:
    """Print each figure against its limit; 1 when any is over (or cannot be measured), else 0."""
    machine = build_machine()
    failed = False
    for name, value in measure(machine).items():
        limit = LIMITS_MS[name]
        if value is None:
            print(f"diagram {name}, {len(machine.states)} states: not measured, dot is not installed (FAIL)")
            failed = True
            continue
        verdict = "" if value <= limit else "  OVER LIMIT"
        failed = failed or value > limit
        print(f"diagram {name}, {len(machine.states)} states: {value:.1f} ms (limit {limit:.0f} ms){verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
