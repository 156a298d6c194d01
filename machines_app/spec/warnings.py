"""Warnings: the machine is valid but probably not what was meant."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from machines_app.spec.fields import Reporter, name_list
from machines_app.spec.reader import key_path


def next_fires(state: Any) -> bool:
    """Whether NEXT can ever fire in this state. The engine fires it when the last task of a
    non-terminal state is done, never on entering a state (`stacks.engine._state_done`)."""
    return bool(state.tasks) and not state.terminal


def _targets(actions: Any) -> set[str]:
    return {action.state for action in actions if action.kind == "advance"}


def advance_targets(state: Any) -> set[str]:
    """Where this state's handlers can move a stack; its NEXT handler counts only if NEXT can fire."""
    return {target for event, actions in state.on.items() if event != "NEXT" or next_fires(state)
            for target in _targets(actions)}


def reachable_states(states: Mapping[str, Any]) -> set[str]:
    """States an INIT stack can get to by any event (NEXT included where it can fire)."""
    if "INIT" not in states:
        return set()
    seen, todo = {"INIT"}, ["INIT"]
    while todo:
        for target in advance_targets(states[todo.pop()]):
            if target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def warn_unreachable_states(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    reachable = reachable_states(states)
    for name in states:
        if reachable and name not in reachable:
            dead = [source for source, state in states.items() if source in reachable and not next_fires(state)
                    and name in _targets(state.on.get("NEXT", ()))]
            message = f"state {name} cannot be reached from INIT: no reachable state advances to it"
            if dead:
                message = (
                    f"state {name} cannot be reached from INIT: only the NEXT handler of {name_list(dead)} "
                    "leads to it, and NEXT never fires there (it fires when the tasks of a non-terminal "
                    "state are done, so never in a state without tasks)"
                )
            report.warn(key_path("states", name), lines.get(name), message)


def warn_no_terminal_path(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    reachable = reachable_states(states)
    has_terminal = any(state.terminal for state in states.values())
    if reachable and has_terminal and not any(states[name].terminal for name in reachable):
        message = "no terminal state can be reached from INIT: stacks of this machine are never removed"
        report.warn("states.INIT", lines.get("INIT"), message)


def warn_unhandled_events(places: Mapping[str, tuple[str, int | None]], states: Mapping, report: Reporter) -> None:
    """`places`: each declared event's path and line, in declaration order."""
    handled = {event for state in states.values() for event in state.on}
    for event, (path, line) in places.items():
        if event not in handled:
            message = f"event {event} is declared but no state handles it: sending it is always rejected"
            report.warn(path, line, message)


def warn_unused_tasks(tasks: Iterable[str], states: Mapping, lines: Mapping, report: Reporter) -> None:
    used = {name for state in states.values() for name in state.tasks}
    for name in tasks:
        if name not in used:
            report.warn(key_path("tasks", name), lines.get(name), f"task {name} is defined but no state uses it")


def warn_next_in_terminal(states: Mapping, lines: Mapping[str, int], report: Reporter) -> None:
    """A terminal stack is removed once its tasks are done, so its NEXT handler can never run."""
    for name, state in states.items():
        if state.terminal and "NEXT" in state.on:
            message = (
                f"state {name} is terminal: the stack is removed when its tasks are done, "
                "so this NEXT handler never runs"
            )
            path = key_path(key_path(key_path("states", name), "on"), "NEXT")
            report.warn(path, lines.get(name), message)
