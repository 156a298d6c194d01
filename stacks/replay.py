"""Replaying a stack's recorded history through the engine: one frame per history entry (pure).

Each history entry (plain data, as `stacks.history` reads it from StackEvent rows) is applied the
way `stacks.services` applied it: an `applied` entry merges its metadata and runs the engine (or a
service event: UPDATE_METADATA merges only, UPGRADE_MACHINE changes the machine version, RETRY_TASK
retries one task); an `ignored` or `rejected` entry changes nothing. The frame after each entry is
what the stack was right after it: state, previous state, metadata, tasks (by name and status:
task-instance ids are new on replay), the path taken so far (transitions with counts, states where
a task failed) and the states entered by that entry. No Django, no database, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from machines_app.spec import Machine
from stacks import engine
from stacks.engine import EventRejected, StackSnapshot

UPDATE_METADATA, UPGRADE_MACHINE, RETRY_TASK = "UPDATE_METADATA", "UPGRADE_MACHINE", "RETRY_TASK"
APPLIED = "applied"


@dataclass(frozen=True)
class Entry:
    """One history entry, as much of it as replay needs."""

    id: int
    event: str
    outcome: str
    metadata: Mapping = field(default_factory=dict)
    task: str = ""  # the history's task label: "name", "name (instance 1a2b3c4d)" or "instance 1a2b3c4d"
    version: object = None  # key of the machine version in force after the entry (None: unknown)
    created_at: str | None = None
    from_state: str | None = None
    to_state: str | None = None


@dataclass
class _Run:
    machine: Machine
    version: object
    stack: StackSnapshot | None = None
    removed: bool = False
    edges: dict = field(default_factory=dict)  # "FROM>TO" -> times taken
    failed: list = field(default_factory=list)  # states where a task failed, in order first seen


def task_name(label: str) -> str | None:
    """The task name in a history label (None when the label names only an instance)."""
    if not label or label.startswith("instance "):
        return None
    return label.split(" (instance ", 1)[0]


def replay(entries: Iterable[Entry], stack_id: str, machines: Callable[[object], Machine],
           first_version: object) -> list[dict]:
    """Frames (JSON-ready dicts), one per entry, oldest first.

    `machines(version)` gives the machine of a version key; `first_version` is the version to start
    with when the first entries do not say (entries written before versions were recorded).
    """
    counter = itertools.count(1)
    run = _Run(machine=machines(first_version), version=first_version)
    frames = []
    for entry in entries:
        error, entered = None, ()
        if entry.outcome == APPLIED:
            try:
                entered = _apply(run, entry, stack_id, machines, lambda: f"r{next(counter)}")
            except EventRejected as exc:  # the recorded history and the engine disagree
                error = exc.message
        frames.append(_frame(run, entry, entered, error))
    return frames


def _apply(run: _Run, entry: Entry, stack_id: str, machines, new_id) -> tuple[str, ...]:
    if entry.version is not None and entry.version != run.version and entry.event != UPGRADE_MACHINE:
        run.machine, run.version = machines(entry.version), entry.version
    if run.stack is None:
        run.stack = StackSnapshot(id=stack_id, state=engine.INIT)
    before = replace(run.stack, metadata=engine.merge_metadata(run.stack.metadata, entry.metadata))
    if entry.event == UPDATE_METADATA:
        run.stack = before
        return ()
    if entry.event == UPGRADE_MACHINE:
        if entry.version is not None:
            run.machine, run.version = machines(entry.version), entry.version
        run.stack = before
        return ()
    name = task_name(entry.task)
    ref = {"name": name} if name else None
    if entry.event == RETRY_TASK:
        outcome = engine.retry_task(run.machine, before, ref, new_id=new_id)
    else:
        outcome = engine.apply_event(run.machine, before, entry.event, task_ref=ref, new_id=new_id)
    if outcome.ignored:
        return ()
    return _took(run, outcome)


def _took(run: _Run, outcome: engine.Outcome) -> tuple[str, ...]:
    """Keep the outcome's snapshot and add its transitions and failed tasks to the path."""
    run.stack, run.removed = outcome.stack, outcome.removed
    for transition in outcome.transitions:
        key = f"{transition.from_state}>{transition.to_state}"
        run.edges[key] = run.edges.get(key, 0) + 1
    for task in run.stack.tasks:
        if task.status == engine.ERROR and run.stack.state not in run.failed:
            run.failed.append(run.stack.state)
    return tuple(t.to_state for t in outcome.transitions)


def _frame(run: _Run, entry: Entry, entered: tuple[str, ...], error: str | None) -> dict:
    stack = run.stack
    return {
        "eventId": entry.id,
        "event": entry.event,
        "outcome": entry.outcome,
        "createdAt": entry.created_at,
        "version": run.version,
        "state": stack.state if stack else None,
        "previousState": stack.previous_state if stack else None,
        "metadata": dict(stack.metadata) if stack else {},
        # By name and status only: instance ids are new on replay, and the history keeps no error text.
        "tasks": [{"name": t.name, "status": t.status} for t in stack.tasks]
        if stack else [],
        "removed": run.removed,
        "path": {"edges": dict(run.edges), "failed": list(run.failed)},
        "entered": list(entered),
        "replayError": error,
    }


def differences(frame: dict | None, *, state: str, previous_state: str | None, metadata: Mapping,
                tasks: list[tuple[str, str]], removed: bool) -> list[str]:
    """What the last frame says that the stored stack does not (empty: they agree)."""
    if frame is None:
        return ["the history has no entries for this stack"]
    found = []
    if frame["replayError"]:
        found.append(f"an entry could not be replayed: {frame['replayError']}")
    replayed_tasks = [(t["name"], t["status"]) for t in frame["tasks"]]
    for what, replayed, stored in (
        ("state", frame["state"], state),
        ("previous state", frame["previousState"], previous_state),
        ("metadata", frame["metadata"], dict(metadata)),
        ("tasks", replayed_tasks, list(tasks)),
        ("removed", frame["removed"], removed),
    ):
        if replayed != stored:
            found.append(f"{what}: replay gives {replayed!r}, stored {stored!r}")
    return found
