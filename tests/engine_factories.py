"""Build machines and stacks for engine tests straight from the spec dataclasses (no YAML, no Django).

The engine is tested independently of the YAML parser, so a broken parser cannot hide or fake an
engine bug; these helpers keep such hand-built machines short enough to read in a test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from machines_app.spec import Action, Machine, State, TaskDef
from stacks.engine import PENDING, StackSnapshot, TaskInstance

NOOP = Action(kind="no-op")


def advance(state: str) -> Action:
    return Action(kind="advance", state=state)


def state(
    name: str,
    *,
    terminal: bool = False,
    tasks: Iterable[str] = (),
    on: Mapping[str, Iterable[Action]] | None = None,
) -> State:
    """A State whose handlers are given as plain lists: {"LAUNCH": [advance("RUN")]}."""
    handlers = {event: tuple(actions) for event, actions in (on or {}).items()}
    return State(name=name, terminal=terminal, tasks=tuple(tasks), on=MappingProxyType(handlers))


def machine(*states: State, events: Iterable[str]) -> Machine:
    """A Machine over the given states; every task they name gets an `external` definition."""
    names = dict.fromkeys(task for s in states for task in s.tasks)
    return Machine(
        version=1,
        events=tuple(events),
        states=MappingProxyType({s.name: s for s in states}),
        tasks=MappingProxyType({name: TaskDef(name=name, executor="external") for name in names}),
    )


def ids(prefix: str = "i") -> Callable[[], str]:
    """A `new_id` that counts (i1, i2, ...), so tests can name the ids they expect."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def stack(
    state_name: str,
    *tasks: tuple[str, str] | tuple[str, str, str],
    stack_id: str = "master",
    previous: str | None = None,
) -> StackSnapshot:
    """A snapshot with tasks given as (id, name) or (id, name, status)."""
    instances = tuple(TaskInstance(id=t[0], name=t[1], status=t[2] if len(t) > 2 else PENDING) for t in tasks)
    return StackSnapshot(id=stack_id, state=state_name, previous_state=previous, tasks=instances)


def qa_env() -> Machine:
    """A machine shaped like the overview's qa-env: provision, run, freeze, tear down."""
    return machine(
        state("INIT", on={"LAUNCH": [advance("PROVISION")]}),
        state(
            "PROVISION",
            tasks=["db-setup", "cert"],
            on={"NEXT": [advance("RUN")], "DESTROY": [advance("DESTROYING")]},
        ),
        state(
            "RUN",
            on={
                "DESTROY": [advance("DESTROYING")],
                "FREEZE": [advance("FROZEN")],
                "UPDATE": [NOOP],
            },
        ),
        state(
            "FROZEN",
            on={"LAUNCH": [advance("RUN")], "NEXT": [advance("RUN")], "DESTROY": [advance("DESTROYED")]},
        ),
        state("DESTROYING", tasks=["teardown"], on={"NEXT": [advance("DESTROYED")]}),
        state("DESTROYED", terminal=True),
        events=["LAUNCH", "DESTROY", "FREEZE", "UPDATE"],
    )
