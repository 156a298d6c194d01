"""Apply one event to one stack snapshot under one machine: the rules of DESIGN §3, step 4-6.

Pure Python (no Django, no database, no clock): the service layer loads a snapshot, calls
`apply_event`, and persists the result, so these rules can be tested fast and exhaustively.
Public: `apply_event`, `retry_task` (one failed task), `merge_metadata` (§3 step 3), `is_removable`
(§3 step 6), `EventRejected`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from machines_app.spec import Action, Machine
from machines_app.spec.model import (
    ERROR,
    INIT,
    NEXT,
    PENDING,
    RETRY_FAILED_TASKS,
    RETRY_PENDING_TASKS,
    SATISFIED,
    TASK_COMPLETED,
    TASK_ERROR,
)

# The shared vocabulary is re-exported: callers say engine.PENDING, engine.NEXT …
VOCABULARY = (ERROR, INIT, NEXT, PENDING, RETRY_FAILED_TASKS, RETRY_PENDING_TASKS, SATISFIED, TASK_COMPLETED,
              TASK_ERROR)


class EventRejected(Exception):
    """The one exception of the engine: the event cannot be applied; nothing changed.

    `code` lets callers pick a status: "not_accepted" (409), "unknown_task" (409/404),
    "system_event" (400: NEXT from outside), "nothing_to_retry" (409), "bad_event" (400).
    """

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class TaskInstance:
    id: str  # task-instance id; a new one per dispatch generation (advance or retry)
    name: str
    status: str = PENDING
    error: str | None = None
    attempts: int = 0
    running: bool = False  # a worker is running it right now (the caller knows from its heartbeat)


@dataclass(frozen=True, slots=True)
class StackSnapshot:
    id: str
    state: str
    previous_state: str | None = None
    tasks: tuple[TaskInstance, ...] = ()
    metadata: Mapping = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Transition:
    event: str  # the event that caused it: a user event or NEXT
    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class Outcome:
    stack: StackSnapshot  # the new snapshot
    transitions: tuple[Transition, ...] = ()  # every advance, in order (NEXT chains included)
    dispatch: tuple[str, ...] = ()  # ids of task instances to run now (new or retried)
    cancelled: tuple[str, ...] = ()  # ids of task instances no longer current (jobs may be dropped)
    removed: bool = False  # terminal state reached with every task satisfied
    ignored: bool = False  # a stale completion: recorded, changes nothing
    ignored_reason: str | None = None
    next_fired: bool = False  # NEXT was applied (even when its actions were all no-op)
    retired: tuple[TaskInstance, ...] = ()  # last version of each replaced instance (e.g. completed, then left)


MAX_TRANSITIONS = 1000  # hard bound on advances in one call; a machine that needs more is looping
DEFAULT_TASK_ERROR = "task failed"
_RETRY_STATUS = {RETRY_FAILED_TASKS: (ERROR, "failed"), RETRY_PENDING_TASKS: (PENDING, "pending")}


class _Ignored(Exception):
    """Internal: a stale or repeated task report. It is recorded by the caller but changes nothing."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class _Step:
    """The work in progress of one `apply_event` call: the snapshot so far and what happened to it."""

    stack: StackSnapshot
    transitions: tuple[Transition, ...] = ()
    next_fired: bool = False
    retired: tuple[TaskInstance, ...] = ()


def apply_event(
    machine: Machine,
    stack: StackSnapshot,
    event: str,
    *,
    task_ref: Mapping | None = None,  # {"id": ...} or {"name": ...} for TASK_COMPLETED / TASK_ERROR
    description: str | None = None,  # error text for TASK_ERROR
    new_id: Callable[[], str],  # makes task-instance ids
) -> Outcome:
    """Apply one event and return the new snapshot with its effects; raise EventRejected if it can't be.

    `new_id` must return a fresh, unique id on each call: dispatched jobs carry it, and a completion
    naming an id that is no longer current is how stale results are recognised.
    """
    _check_stack_state(machine, stack)
    if not isinstance(stack.tasks, tuple):  # a list from the caller must not leak into a frozen result
        stack = _with_tasks(stack, tuple(stack.tasks))
    try:
        step = _apply(machine, stack, event, task_ref, description, new_id)
    except _Ignored as ignored:
        return Outcome(stack=stack, removed=is_removable(machine, stack), ignored=True, ignored_reason=ignored.reason)
    return _outcome(machine, stack, step)


def merge_metadata(old: Mapping, new: Mapping | None) -> dict:
    """Merge a message's flat metadata into a stack's (§3 step 3); a None value deletes the key.

    Deleting by null lets a sender retract a value without a separate operation.
    """
    merged = dict(old)
    for key, value in (new or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def is_removable(machine: Machine, stack: StackSnapshot) -> bool:
    """§3 step 6: a stack in a terminal state with every task satisfied (or none) leaves the active set."""
    return machine.states[stack.state].terminal and _all_satisfied(stack.tasks)


# --- routing -------------------------------------------------------------------------------------


def _apply(
    machine: Machine,
    stack: StackSnapshot,
    event: str,
    task_ref: Mapping | None,
    description: str | None,
    new_id: Callable[[], str],
) -> _Step:
    """Route the event to the rule that handles it (system events first: a machine cannot declare them)."""
    if not isinstance(event, str) or not event:
        raise EventRejected("bad_event", "an event name is required")
    if event == NEXT:
        raise EventRejected(
            "system_event",
            "NEXT is fired by CloudSeam itself when a state's tasks are done; it cannot be sent",
        )
    if event == TASK_COMPLETED:
        return _complete_task(machine, stack, task_ref, new_id)
    if event == TASK_ERROR:
        return _fail_task(stack, task_ref, description)
    if event in _RETRY_STATUS:
        return _retry(stack, event, new_id)
    if event in machine.events:
        return _user_event(machine, stack, event, new_id)
    raise EventRejected(
        "not_accepted",
        f"event {event} is not an event of this machine; its events: {_listing(machine.events)}"
        + _suggestion(event, machine.events),
    )


# --- outcome -------------------------------------------------------------------------------------


def _outcome(machine: Machine, original: StackSnapshot, step: _Step) -> Outcome:
    """Derive the effects by comparing task ids before and after, so every rule reports them alike.

    New ids are the instances to run now; ids that disappeared were replaced (by an advance or a retry)
    and their jobs, if any, may be dropped.
    """
    before_ids = [task.id for task in original.tasks]
    after_ids = [task.id for task in step.stack.tasks]
    if before_ids == after_ids:  # a report about one task: nothing to run, nothing replaced (the usual case)
        dispatch = cancelled = ()
    else:
        before, after = set(before_ids), set(after_ids)
        dispatch = tuple(task_id for task_id in after_ids if task_id not in before)
        cancelled = tuple(task_id for task_id in before_ids if task_id not in after)
    retired = tuple(task for task in step.retired if task.id in before_ids) if step.retired else ()
    return Outcome(stack=step.stack, transitions=step.transitions, dispatch=dispatch, cancelled=cancelled,
                   removed=is_removable(machine, step.stack), next_fired=step.next_fired, retired=retired)


# --- user events and advancing -------------------------------------------------------------------


def _user_event(machine: Machine, stack: StackSnapshot, event: str, new_id: Callable[[], str]) -> _Step:
    """Run the current state's actions for a declared event, or reject it naming what is accepted."""
    actions = machine.states[stack.state].on.get(event)
    if actions is None:
        accepted = machine.accepted_events(stack.state)
        raise EventRejected(
            "not_accepted",
            f"event {event} is not accepted by stack {stack.id} in state {stack.state}; "
            f"accepted events: {_listing(accepted)}",
        )
    return _run_actions(machine, _Step(stack), event, actions, new_id)


def _run_actions(
    machine: Machine, step: _Step, event: str, actions: Iterable[Action], new_id: Callable[[], str]
) -> _Step:
    """Run a handler's actions in order; only `advance` changes anything, `no-op` is there on purpose."""
    for action in actions:
        if action.kind == "advance":
            step = _advance(machine, step, event, action.state, new_id)
    return step


def _advance(machine: Machine, step: _Step, event: str, target: str | None, new_id: Callable[[], str]) -> _Step:
    """Enter `target` (even when it is the current state): fresh PENDING tasks replace the old ones."""
    if target not in machine.states:
        raise EventRejected(
            "bad_event",
            f"event {event} advances stack {step.stack.id} to state {target}, which the machine "
            f"does not define; its states: {_listing(machine.states)}",
        )
    if len(step.transitions) >= MAX_TRANSITIONS:
        raise EventRejected(
            "bad_event",
            f"event {event} would move stack {step.stack.id} through more than {MAX_TRANSITIONS} "
            "transitions at once; the machine loops without waiting for a task",
        )
    tasks = tuple(TaskInstance(id=new_id(), name=name) for name in machine.states[target].tasks)
    old = step.stack
    stack = StackSnapshot(old.id, target, old.state, tasks, old.metadata)
    transition = Transition(event=event, from_state=step.stack.state, to_state=target)
    retired = (*step.retired, *step.stack.tasks)
    return _Step(stack, (*step.transitions, transition), step.next_fired, retired)


# --- task reports --------------------------------------------------------------------------------


def _complete_task(
    machine: Machine, stack: StackSnapshot, task_ref: Mapping | None, new_id: Callable[[], str]
) -> _Step:
    """Mark the task SATISFIED; when that finishes a non-terminal state, fire NEXT (§3 step 4)."""
    index = _find_task(stack, TASK_COMPLETED, task_ref)
    task = stack.tasks[index]
    if task.status == SATISFIED:
        raise _Ignored(f"task {task.name} (instance {task.id}) is already satisfied")
    done = TaskInstance(task.id, task.name, SATISFIED, None, task.attempts, task.running)
    step = _Step(_with_task(stack, index, done))
    return _fire_next_while_done(machine, step, new_id)


def _fail_task(stack: StackSnapshot, task_ref: Mapping | None, description: str | None) -> _Step:
    """Mark the task ERROR with the worker's message; the stack waits for a retry or another event."""
    index = _find_task(stack, TASK_ERROR, task_ref)
    task = stack.tasks[index]
    if task.status == SATISFIED:
        raise _Ignored(f"task {task.name} (instance {task.id}) is already satisfied; the error report is stale")
    if task.status == ERROR:
        # A repeated report (two liveness checks, a worker and a checker): the first one stands.
        raise _Ignored(
            f"task {task.name} (instance {task.id}) has already failed; the repeated error report is ignored"
        )
    failed = TaskInstance(task.id, task.name, ERROR, description or DEFAULT_TASK_ERROR, task.attempts, task.running)
    return _Step(_with_task(stack, index, failed))


def _fire_next_while_done(machine: Machine, step: _Step, new_id: Callable[[], str]) -> _Step:
    """Fire NEXT once the last task of a non-terminal state is satisfied (§3 step 4).

    New tasks start PENDING, so after NEXT the stack rests: in a state with tasks to run, or in one
    without (entering a state never fires NEXT by itself). The loop, with the bound in `_advance`,
    only matters should a state ever be entered already done; a NEXT that leaves the tasks as they
    were (a no-op handler, or none at all) is not fired again: the stack simply stays.
    """
    fired_for: tuple[TaskInstance, ...] | None = None
    while _state_done(machine, step.stack) and step.stack.tasks != fired_for:
        fired_for = step.stack.tasks
        actions = machine.states[step.stack.state].on.get(NEXT, ())
        step = _run_actions(machine, step, NEXT, actions, new_id)
        step = _Step(step.stack, step.transitions, True, step.retired)
    return step


def _state_done(machine: Machine, stack: StackSnapshot) -> bool:
    """The NEXT condition: a non-terminal state that has tasks, all of them satisfied."""
    return bool(stack.tasks) and not machine.states[stack.state].terminal and _all_satisfied(stack.tasks)


def _find_task(stack: StackSnapshot, event: str, task_ref: Mapping | None) -> int:
    """Index of the current task a report refers to: by instance id (stale ids are ignored) or by name."""
    key, value = _task_key(event, task_ref)
    if key == "id":
        for index, task in enumerate(stack.tasks):
            if task.id == value:
                return index
        raise _Ignored(f"task instance {value} is not current (the stack moved on or the task was retried)")
    return _find_task_by_name(stack, value)


def _find_task_by_name(stack: StackSnapshot, name: str) -> int:
    """The current state's task with that name; an unfinished one first should a name repeat."""
    matches = [index for index, task in enumerate(stack.tasks) if task.name == name]
    if not matches:
        names = ", ".join(task.name for task in stack.tasks)
        tasks = f"its tasks: {names}" if names else "it has no tasks"
        raise EventRejected(
            "unknown_task", f"stack {stack.id} has no task named {name} in state {stack.state}; {tasks}"
        )
    unfinished = [index for index in matches if stack.tasks[index].status != SATISFIED]
    return (unfinished or matches)[0]


def _task_key(event: str, task_ref: Mapping | None) -> tuple[str, str]:
    """Read {"id": ...} or {"name": ...} (the id wins when both are given; other keys, such as the
    executor and config a worker echoes back, are ignored), rejecting a reference with neither."""
    if isinstance(task_ref, Mapping):
        for key in ("id", "name"):
            value = task_ref.get(key)
            if isinstance(value, str) and value:
                return key, value
    raise EventRejected(
        "bad_event",
        f'{event} needs the task it reports on: {{"id": "<task instance id>"}} or {{"name": "<task name>"}}',
    )


# --- retries -------------------------------------------------------------------------------------


def _retry(stack: StackSnapshot, event: str, new_id: Callable[[], str]) -> _Step:
    """Replace every task in the retried status by a new PENDING instance to dispatch again.

    A new id per retry makes a late result from the replaced job stale instead of counting twice.
    A pending task that is running right now is left alone: it is not lost, and a second run of it
    would do its work twice.
    """
    status, word = _RETRY_STATUS[event]
    targets = [task for task in stack.tasks if task.status == status and not task.running]
    if not targets:
        running = any(task.status == status and task.running for task in stack.tasks)
        detail = f"; its {word} tasks are running right now" if running else ""
        raise EventRejected("nothing_to_retry", f"stack {stack.id} has no {word} tasks to retry{detail}")
    chosen = {task.id for task in targets}
    tasks = tuple(
        TaskInstance(new_id(), task.name, PENDING, None, task.attempts) if task.id in chosen else task
        for task in stack.tasks
    )
    return _Step(_with_tasks(stack, tasks), retired=tuple(targets))


def retry_task(
    machine: Machine, stack: StackSnapshot, task_ref: Mapping | None, *, new_id: Callable[[], str]
) -> Outcome:
    """Run one failed task again: it gets a new PENDING instance, the other tasks stay as they are.

    The task is named by `{"name": …}` or `{"id": …}` (a current instance); only an ERROR task can be
    retried this way (RETRY_PENDING_TASKS re-dispatches pending ones).
    """
    _check_stack_state(machine, stack)
    try:
        index = _find_task(stack, "RETRY_TASK", task_ref)
    except _Ignored as stale:
        raise EventRejected("unknown_task", f"cannot retry: {stale.reason}") from None
    task = stack.tasks[index]
    if task.status != ERROR:
        raise EventRejected(
            "nothing_to_retry",
            f"task {task.name} of stack {stack.id} is {task.status}, not failed; only a failed task can be retried",
        )
    again = TaskInstance(new_id(), task.name, PENDING, None, task.attempts)
    step = _Step(_with_task(stack, index, again), retired=(task,))
    return _outcome(machine, stack, step)


# --- small helpers -------------------------------------------------------------------------------


def _check_stack_state(machine: Machine, stack: StackSnapshot) -> None:
    """Refuse to guess for a stack whose state its (pinned) machine does not define."""
    if stack.state not in machine.states:
        raise EventRejected(
            "bad_event",
            f"stack {stack.id} is in state {stack.state}, which its machine does not define; "
            f"its states: {_listing(machine.states)}",
        )


def _with_task(stack: StackSnapshot, index: int, task: TaskInstance) -> StackSnapshot:
    tasks = (*stack.tasks[:index], task, *stack.tasks[index + 1 :])
    return _with_tasks(stack, tasks)


def _with_tasks(stack: StackSnapshot, tasks: tuple[TaskInstance, ...]) -> StackSnapshot:
    # Plain constructor calls rather than dataclasses.replace: replace() was most of the engine's time.
    return StackSnapshot(stack.id, stack.state, stack.previous_state, tasks, stack.metadata)


def _all_satisfied(tasks: Iterable[TaskInstance]) -> bool:
    return all(task.status == SATISFIED for task in tasks)


def _listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _suggestion(name: str, known: Iterable[str]) -> str:
    """"; did you mean FREEZE?" for a near miss (a typo), nothing otherwise."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""
