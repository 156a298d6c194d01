"""The walk over a machine document: version, events, tasks, states, in order, one rule each.

Every problem is collected instead of stopping at the first, and the frozen `Machine` is built when
there are none. Warnings are worked out even when there are errors, from the parts that could be
read, so the editor can show both at once. The decisions the format leaves open are written down in
docs/machine-format.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from machines_app.spec import executor_configs, lifetimes, notify, reader, warnings
from machines_app.spec.fields import Fields, describe, is_number, name_list, unknown_name
from machines_app.spec.model import (
    ACTION_KINDS,
    EXECUTORS,
    MACHINE_NAME_PATTERN,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    STATE_KEYS,
    SYSTEM_EVENTS,
    TASK_KEYS,
    TASK_NAME_PATTERN,
    TOP_KEYS,
    Action,
    Machine,
    Problem,
    SpecError,
    State,
    TaskDef,
    Validation,
)
from machines_app.spec.reader import LineDict, LineList, item_path, key_path, line_of, quote


def validate(text: str | bytes, python_prefixes: Iterable[str] | None = None) -> Validation:
    """Parse and check YAML text; never raises for bad input, returns the problems instead.

    `python_prefixes`: the modules `python` tasks may call (CLOUDSEAM_PYTHON_PREFIXES); None skips
    that check, as for versions already stored, which must keep loading.
    """
    try:
        return _validate(text, python_prefixes)
    except Exception as exc:  # the last line of defence: a bad document must never become a 500
        message = (
            f"the validator failed on this document ({type(exc).__name__}); "
            "this is a bug in CloudSeam, please report it"
        )
        return Validation(None, (Problem("", None, message),), ())


def load(text: str | bytes) -> Machine:
    """Parse and check YAML text, raising SpecError with every problem when it is not valid."""
    result = validate(text)
    if result.machine is None:
        raise SpecError(list(result.errors))
    return result.machine


def check_machine_name(name: str) -> str | None:
    """Why a machine name is not allowed, or None. Names are file names without .yml/.yaml."""
    if not isinstance(name, str) or not name:
        return "a machine name is required: the file name without .yml, e.g. qa-env"
    if re.fullmatch(MACHINE_NAME_PATTERN, name) and not name.endswith((".yml", ".yaml")):
        return None
    if name.endswith((".yml", ".yaml")):
        return f"machine name {quote(name)} must leave out the .yml/.yaml extension"
    if re.fullmatch(MACHINE_NAME_PATTERN, name.lower()):
        return f"machine name {quote(name)} must be lower case: use {quote(name.lower())}"
    return (
        f"machine name {quote(name)} is not allowed; use 1-63 lower-case letters, digits, '.', '_' "
        "or '-', starting with a letter or digit"
    )


# --- the walk -----------------------------------------------------------------------------------


class _Report:
    """Collects problems as `Problem`s; `fields.Reporter` is the interface the rules use."""

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, path: str, line: int | None, message: str) -> None:
        self.errors.append(Problem(path, line, message))

    def warn(self, path: str, line: int | None, message: str) -> None:
        self.warnings.append(Problem(path, line, message))

    def result(self, machine: Machine | None) -> Validation:
        def by_line(problem: Problem) -> tuple[bool, int]:
            return problem.line is None, problem.line or 0

        errors = tuple(sorted(self.errors, key=by_line))
        return Validation(None if errors else machine, errors, tuple(sorted(self.warnings, key=by_line)))


@dataclass(frozen=True)
class _Names:
    """Every name the document declares, for cross-references (even names with their own errors)."""

    events: tuple[str, ...]
    states: tuple[str, ...]
    tasks: tuple[str, ...]


def _validate(text: str | bytes, python_prefixes: Iterable[str] | None = None) -> Validation:
    parsed = reader.parse(text)
    if parsed.data is None:
        return Validation(None, tuple(Problem(p.path, p.line, p.message) for p in parsed.problems), ())
    report = _Report()
    machine = _read_machine(parsed.data, report)
    if python_prefixes is not None:
        executor_configs.python_callables_allowed(parsed.data.get("tasks"), tuple(python_prefixes), report)
    return report.result(machine)


def _read_machine(doc: LineDict, report: _Report) -> Machine:
    top = Fields(doc, "", None, report, "the machine")
    _check_top_keys(top)
    version = _read_version(top)
    raw_events = _section(top, "events", LineList(), "a list of event names, e.g. [LAUNCH, DESTROY]")
    raw_tasks = _section(top, "tasks", LineDict(), "a mapping of task names to tasks")
    raw_states = _section(top, "states", LineDict(), "a mapping of state names to states", required=True)
    events = _read_events(raw_events, report)
    tasks = _read_tasks(raw_tasks, report)
    names = _Names(events, tuple(raw_states), tuple(raw_tasks))
    states = _read_states(raw_states, names, report)
    if isinstance(doc.get("states"), dict):  # else 'states' itself is already reported
        _check_init_and_terminal(raw_states, top)
    _warn(events, states, tasks, (raw_events, raw_states, raw_tasks), report)
    rules = notify.read_notify(doc.get("notify"), tuple(raw_states), top)
    lifetime = lifetimes.read_lifetime(top, events)
    return Machine(version, events, MappingProxyType(states), MappingProxyType(tasks), rules, lifetime)


def _check_top_keys(top: Fields) -> None:
    allowed = ", ".join(TOP_KEYS) + ", and keys starting with x- (ignored; for YAML anchors)"
    for key in top.mapping:
        if key not in TOP_KEYS and not key.startswith("x-"):
            top.error(key, f"unknown top-level key {quote(key)}; allowed keys: {allowed}")


def _read_version(top: Fields) -> int:
    value = top.get("version", True, "; write 'version: 1' at the top")
    if value is not None and not (is_number(value) and value == 1):
        top.error("version", f"'version' must be 1 (the number: machine format v1); found {describe(value)}")
    return 1


def _section(top: Fields, key: str, empty: Any, shape: str, required: bool = False) -> Any:
    """A top-level list or mapping; `empty` when it is missing or of the wrong kind (reported)."""
    plain = list if isinstance(empty, list) else dict
    value = top.typed(key, lambda v: isinstance(v, plain), shape, required)
    return empty if value is None else value


# --- events -------------------------------------------------------------------------------------


def _name_problem(kind: str, name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"{kind} name {quote(name)} is {len(name)} characters long; {kind} names may have at most "
            f"{MAX_NAME_LENGTH} characters"
        )
    return (
        f"{kind} name {quote(name)} is not allowed; use upper-case letters, digits and '-', "
        "e.g. PROVISION or UPDATE-RUN"
    )


def _event_problem(name: Any, first: dict[str, int | None]) -> str | None:
    if not isinstance(name, str):
        return f"an event name must be text; found {describe(name)}"
    if name == "NEXT":
        return "NEXT must not be declared: it is implicit (fired by the system when a state's tasks are done)"
    if name in SYSTEM_EVENTS:
        return f"{name} is a system event handled by CloudSeam itself and cannot be declared; only NEXT may appear"
    if not re.fullmatch(NAME_PATTERN, name):
        return _name_problem("event", name)
    if name in first:
        return f"event {name} is declared twice (first at line {first[name]})"
    return None


def _read_events(raw: LineList, report: _Report) -> tuple[str, ...]:
    first: dict[str, int | None] = {}
    for index, name in enumerate(raw):
        problem = _event_problem(name, first)
        if problem is not None:
            report.error(item_path("events", index), line_of(raw, index), problem)
        elif name not in first:
            first[name] = line_of(raw, index)
    return tuple(first)


# --- tasks --------------------------------------------------------------------------------------


def _read_tasks(raw: LineDict, report: _Report) -> dict[str, TaskDef]:
    tasks = {}
    for name, body in raw.items():
        path, line = key_path("tasks", name), line_of(raw, name)
        if not re.fullmatch(TASK_NAME_PATTERN, name):
            message = (
                f"task name {quote(name)} is not allowed; use 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
            report.error(path, line, message)
        task = _read_task(name, body, Fields(body, path, line, report, f"task {name}"))
        if task is not None:
            tasks[name] = task
    return tasks


def _read_task(name: str, body: Any, fields: Fields) -> TaskDef | None:
    if not isinstance(body, dict):
        message = f"task {name} must be a mapping with executor and config; found {describe(body)}"
        fields.report.error(fields.base, fields.line, message)
        return None
    fields.unknown(TASK_KEYS)
    executor = fields.choice("executor", EXECUTORS, required=True)
    timeout = fields.number("timeout", 0, low_open=True)
    retries = fields.integer("retries", 0, default=0)
    config = _read_config(fields, executor)
    if executor is None or config is None:
        return None
    timeout = None if timeout is None else float(timeout)
    return TaskDef(name, executor, MappingProxyType(config), timeout, retries)


def _read_config(fields: Fields, executor: str | None) -> dict | None:
    """The executor's config with defaults filled; omitted config is checked as an empty one."""
    raw = fields.get("config", False)
    if raw is None:
        raw = LineDict(fields.line)
    if not isinstance(raw, dict):
        fields.error("config", f"'config' must be a mapping of executor settings; found {describe(raw)}")
        return None
    if executor is None:
        return None
    return executor_configs.CONFIG_CHECKS[executor](fields.sub("config", raw, f"the {executor} config"))


# --- states -------------------------------------------------------------------------------------


def _read_states(raw: LineDict, names: _Names, report: _Report) -> dict[str, State]:
    states = {}
    for name, body in raw.items():
        path, line = key_path("states", name), line_of(raw, name)
        if not re.fullmatch(NAME_PATTERN, name):
            report.error(path, line, _name_problem("state", name))
        if body is None:  # `RUN:` with nothing under it
            body = LineDict(line)
        if not isinstance(body, dict):
            message = f"state {name} must be a mapping with terminal, tasks and on; found {describe(body)}"
            report.error(path, line, message)
            continue
        states[name] = _read_state(name, Fields(body, path, line, report, f"state {name}"), names)
    return states


def _read_state(name: str, fields: Fields, names: _Names) -> State:
    fields.unknown(STATE_KEYS)
    terminal = fields.boolean("terminal")
    tasks = _read_state_tasks(fields, names)
    on = _read_handlers(fields, names)
    raw_on = fields.mapping.get("on")
    if tasks and not terminal and isinstance(raw_on, dict | None) and "NEXT" not in (raw_on or {}):
        message = (
            f"state {name} has tasks but no NEXT handler; add one under 'on' to say where to go "
            "when its tasks are done (only terminal states may leave it out)"
        )
        fields.error("on", message)
    return State(name, terminal, tasks, MappingProxyType(on))


def _state_task_problem(task: Any, first: dict[str, int | None], known: tuple[str, ...]) -> str | None:
    if not isinstance(task, str):
        return f"a task name must be text; found {describe(task)}"
    if task in first:
        return f"task {task} is listed twice in this state (first at line {first[task]})"
    if task not in known:
        return unknown_name("task", task, known, "is not defined under tasks")
    return None


def _read_state_tasks(fields: Fields, names: _Names) -> tuple[str, ...]:
    raw = fields.typed("tasks", lambda v: isinstance(v, list), "a list of task names, e.g. [create-db]")
    path = fields.where("tasks")[0]
    first: dict[str, int | None] = {}
    for index, task in enumerate(raw or ()):
        problem = _state_task_problem(task, first, names.tasks)
        if problem is not None:
            fields.report.error(item_path(path, index), line_of(raw, index), problem)
        elif task not in first:
            first[task] = line_of(raw, index)
    return tuple(first)


def _handler_event_problem(event: str, declared: tuple[str, ...]) -> str | None:
    if event == "NEXT":
        return None
    if event in SYSTEM_EVENTS:
        return f"{event} is a system event handled by CloudSeam itself; only declared events and NEXT can be handled"
    if not re.fullmatch(NAME_PATTERN, event):
        return _name_problem("event", event)
    if event not in declared:
        return unknown_name("event", event, declared, "is not declared in events") + "; NEXT needs no declaration"
    return None


def _read_handlers(fields: Fields, names: _Names) -> dict[str, tuple[Action, ...]]:
    raw = fields.typed("on", lambda v: isinstance(v, dict), "a mapping of events to lists of actions")
    path = fields.where("on")[0]
    handlers = {}
    for event, actions in (raw or {}).items():
        event_path, line = key_path(path, event), line_of(raw, event)
        problem = _handler_event_problem(event, names.events)
        if problem is not None:
            fields.report.error(event_path, line, problem)
        parsed = _read_actions(actions, event_path, line, names, fields.report)
        if problem is None and parsed is not None:
            handlers[event] = parsed
    return handlers


def _read_actions(raw: Any, path: str, line: int | None, names: _Names, report: _Report) -> tuple[Action, ...] | None:
    example = "e.g. [{action: advance, state: RUN}], [{action: no-op}] or [] (accept, do nothing)"
    if not isinstance(raw, list):
        report.error(path, line, f"an event handler must be a list of actions, {example}; found {describe(raw)}")
        return None
    actions = [
        _read_action(item, Fields(item, item_path(path, index), line_of(raw, index), report, "an action"), names)
        for index, item in enumerate(raw)
    ]
    return None if None in actions else tuple(actions)


def _read_action(raw: Any, fields: Fields, names: _Names) -> Action | None:
    if not isinstance(raw, dict):
        message = f"an action must be {{action: advance, state: NAME}} or {{action: no-op}}; found {describe(raw)}"
        fields.report.error(fields.base, fields.line, message)
        return None
    kind = fields.choice("action", ACTION_KINDS, required=True)
    fields.what = {"advance": "an advance action", "no-op": "a no-op action"}.get(kind, "an action")
    fields.unknown(("action",) if kind == "no-op" else ("action", "state"))
    if kind != "advance":
        return None if kind is None else Action("no-op")
    target = fields.get("state", True, f": the state to move to; known states: {name_list(names.states)}")
    if target is None:
        return None
    if not isinstance(target, str):
        fields.error("state", f"'state' must be a state name (quote names like '404'); found {describe(target)}")
        return None
    if target not in names.states:
        fields.error("state", unknown_name("state", target, names.states))
        return None
    return Action("advance", target)


def _check_init_and_terminal(raw: LineDict, top: Fields) -> None:
    if "INIT" not in raw:
        message = f"an INIT state is required: every stack starts in INIT; states found: {name_list(raw)}"
        top.error("states", message)
    if not any(isinstance(body, dict) and body.get("terminal") is True for body in raw.values()):
        top.error("states", "no state has 'terminal: true'; at least one is needed so stacks can finish")


# --- warnings -----------------------------------------------------------------------------------


def _warn(events: tuple, states: dict, tasks: dict, raw: tuple, report: _Report) -> None:
    raw_events, raw_states, raw_tasks = raw
    places: dict[str, tuple[str, int | None]] = {}
    for index, name in enumerate(raw_events):
        if name in events and name not in places:
            places[name] = (item_path("events", index), line_of(raw_events, index))
    warnings.warn_unreachable_states(states, raw_states.lines, report)
    warnings.warn_no_terminal_path(states, raw_states.lines, report)
    warnings.warn_next_in_terminal(states, raw_states.lines, report)
    warnings.warn_unhandled_events(places, states, report)
    warnings.warn_unused_tasks(tasks, states, raw_tasks.lines, report)
