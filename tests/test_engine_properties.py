"""Invariants of the engine over random valid machines and random event sequences (Hypothesis).

The example tests pin each rule down; these look for the combinations nobody thought of: stale ids
after retries, self-loops, NEXT into terminal states, completions by name in task-less states, ...
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from machines_app.spec import Machine
from stacks.engine import (
    ERROR,
    INIT,
    NEXT,
    PENDING,
    RETRY_FAILED_TASKS,
    RETRY_PENDING_TASKS,
    SATISFIED,
    TASK_COMPLETED,
    TASK_ERROR,
    EventRejected,
    Outcome,
    StackSnapshot,
    Transition,
    apply_event,
)
from tests.engine_factories import NOOP, advance, ids, machine, state

OTHER_STATES = ("A", "B", "C", "D", "E")
TASK_NAMES = ("t1", "t2", "t3", "t4")
EVENT_NAMES = ("GO", "STOP", "HOP")
SYSTEM_SENDABLE = (TASK_COMPLETED, TASK_ERROR, RETRY_FAILED_TASKS, RETRY_PENDING_TASKS, NEXT)


# --- random valid machines -----------------------------------------------------------------------


@st.composite
def machines(draw) -> Machine:
    """Valid v1 machines: INIT plus one to five states, one terminal at least, tasks anywhere,
    every non-terminal state with tasks handling NEXT, every advance target defined.

    INIT always handles some event, advances outnumber no-ops and terminal states are the minority,
    so stacks get somewhere before they are removed.
    """
    names = [INIT, *draw(st.lists(st.sampled_from(OTHER_STATES), unique=True, min_size=1, max_size=5))]
    terminal = [draw(st.integers(0, 9)) == 9] + [draw(st.integers(0, 3)) == 3 for _ in names[1:]]
    if not any(terminal):
        terminal[-1] = True
    events = draw(st.lists(st.sampled_from(EVENT_NAMES), unique=True, min_size=1, max_size=len(EVENT_NAMES)))
    to_any = st.sampled_from(names).map(advance)
    handler = st.lists(st.one_of(to_any, to_any, st.just(NOOP)), min_size=1, max_size=3)
    states = []
    for name, is_terminal in zip(names, terminal, strict=True):
        tasks = draw(st.lists(st.sampled_from(TASK_NAMES), unique=True, max_size=3))
        handled = draw(st.lists(st.sampled_from(events), unique=True, min_size=int(name == INIT)))
        on = {event: draw(handler) for event in handled}
        if (tasks and not is_terminal) or draw(st.booleans()):
            on[NEXT] = draw(handler)
        states.append(state(name, terminal=is_terminal, tasks=tasks, on=on))
    return machine(*states, events=events)


# --- random events -------------------------------------------------------------------------------


def task_refs(snapshot: StackSnapshot, seen_ids: list[str]):
    """Mostly current ids and names; also stale ids, other states' task names and malformed refs."""
    odd = [st.sampled_from(TASK_NAMES).map(lambda n: {"name": n}), st.sampled_from([None, {}, {"id": 7}])]
    if seen_ids:
        odd.append(st.sampled_from(seen_ids).map(lambda i: {"id": i}))
    if not snapshot.tasks:
        return st.one_of(odd)
    current = st.sampled_from(snapshot.tasks)
    by_id, by_name = current.map(lambda t: {"id": t.id}), current.map(lambda t: {"name": t.name})
    return st.one_of(by_id, by_id, by_id, by_name, by_name, st.one_of(odd))


def draw_event(data, machine_: Machine, snapshot: StackSnapshot, seen_ids: list[str]):
    """One event with its keyword arguments, biased towards what moves the stack on.

    Uniform choices would mostly be rejected; favouring accepted events and task completions
    makes the sequences reach NEXT, chains and removal often while still trying everything else.
    """
    accepted = machine_.accepted_events(snapshot.state)
    anything = st.sampled_from([*machine_.events, "UNDECLARED", *SYSTEM_SENDABLE])
    likely = [st.just(TASK_COMPLETED)] * (3 if snapshot.tasks else 0)
    likely += [st.sampled_from(accepted)] * (2 if accepted else 0)
    event = data.draw(st.one_of(*likely, anything), label="event")
    kwargs = {}
    if event in (TASK_COMPLETED, TASK_ERROR):
        kwargs["task_ref"] = data.draw(task_refs(snapshot, seen_ids), label="task_ref")
    if event == TASK_ERROR:
        kwargs["description"] = data.draw(st.sampled_from([None, "", "boom"]), label="description")
    return event, kwargs


# --- an independent oracle for rejections --------------------------------------------------------


def expected_rejection(machine_: Machine, snapshot: StackSnapshot, event: str, task_ref) -> str | None:
    """The rejection code the rules of DESIGN §3 call for, or None when the event must be applied."""
    if event == NEXT:
        return "system_event"
    if event in (TASK_COMPLETED, TASK_ERROR):
        return _task_ref_rejection(snapshot, task_ref)
    if event in (RETRY_FAILED_TASKS, RETRY_PENDING_TASKS):
        wanted = ERROR if event == RETRY_FAILED_TASKS else PENDING
        return None if any(t.status == wanted for t in snapshot.tasks) else "nothing_to_retry"
    handled = event in machine_.events and event in machine_.states[snapshot.state].on
    return None if handled else "not_accepted"


def _task_ref_rejection(snapshot: StackSnapshot, task_ref) -> str | None:
    """A report names its task by a non-empty string id (preferred) or name; anything else is bad."""
    ref = task_ref if isinstance(task_ref, Mapping) else {}
    task_id, name = ref.get("id"), ref.get("name")
    if isinstance(task_id, str) and task_id:
        return None  # an unknown id is stale, not an error
    if not (isinstance(name, str) and name):
        return "bad_event"
    return None if any(t.name == name for t in snapshot.tasks) else "unknown_task"


# --- invariants ----------------------------------------------------------------------------------


def check_tasks_match_state(machine_: Machine, outcome: Outcome) -> None:
    """The current tasks are exactly the current state's, by name and in order.

    The one exception: a new stack is created in INIT without entering it, so until something
    advances into INIT it has none of INIT's tasks (if the machine gives INIT any).
    """
    stack = outcome.stack
    assert stack.state in machine_.states
    never_entered = stack.state == INIT and stack.previous_state is None
    expected = [] if never_entered else list(machine_.states[stack.state].tasks)
    assert [t.name for t in stack.tasks] == expected
    assert len({t.id for t in stack.tasks}) == len(stack.tasks)
    assert all(t.status in (PENDING, SATISFIED, ERROR) for t in stack.tasks)
    assert all((t.error is not None) == (t.status == ERROR) for t in stack.tasks)


def check_effects(before: StackSnapshot, event: str, outcome: Outcome) -> None:
    """New instances are dispatched, replaced ones cancelled, and nothing else."""
    current = {t.id: t for t in outcome.stack.tasks}
    old_ids = [t.id for t in before.tasks]
    assert list(outcome.dispatch) == [i for i in current if i not in old_ids]
    assert all(current[i].status == PENDING for i in outcome.dispatch)
    assert list(outcome.cancelled) == [i for i in old_ids if i not in current]
    if event in (RETRY_FAILED_TASKS, RETRY_PENDING_TASKS):
        retried = [t for t in before.tasks if t.status == (ERROR if event == RETRY_FAILED_TASKS else PENDING)]
        assert list(outcome.cancelled) == [t.id for t in retried]
        assert len(outcome.dispatch) == len(retried)


def check_removal(machine_: Machine, outcome: Outcome) -> None:
    stack = outcome.stack
    done = all(t.status == SATISFIED for t in stack.tasks)
    assert outcome.removed == (machine_.states[stack.state].terminal and done)


def expected_ignored(before: StackSnapshot, event: str, task_ref) -> bool:
    """A report on an instance that is not current, or on a task already satisfied (or, for an error,
    already failed), is ignored."""
    if event not in (TASK_COMPLETED, TASK_ERROR):
        return False
    task_id = task_ref.get("id")
    if isinstance(task_id, str) and task_id:
        matches = [t for t in before.tasks if t.id == task_id]
    else:
        matches = [t for t in before.tasks if t.name == task_ref["name"]]
    if not matches:
        return True
    if event == TASK_ERROR:  # a repeated failure report is ignored too: the first one stands
        picked = ([t for t in matches if t.status != SATISFIED] or matches)[0]
        return picked.status in (SATISFIED, ERROR)
    return all(t.status == SATISFIED for t in matches)


def completes_last_task(machine_: Machine, before: StackSnapshot, event: str, ignored: bool) -> bool:
    """The NEXT condition: a completion satisfies the last unsatisfied task of a non-terminal state."""
    unsatisfied = sum(t.status != SATISFIED for t in before.tasks)
    terminal = machine_.states[before.state].terminal
    return event == TASK_COMPLETED and not ignored and not terminal and unsatisfied == 1


def handler_chain(machine_: Machine, from_state: str, event: str) -> tuple[Transition, ...]:
    """The transitions one run of a state's handler for `event` makes, action by action."""
    chain, here = [], from_state
    for action in machine_.states[from_state].on.get(event, ()):
        if action.kind == "advance":
            chain.append(Transition(event, here, action.state))
            here = action.state
    return tuple(chain)


def check_transitions(machine_: Machine, before: StackSnapshot, event: str, next_due: bool, outcome: Outcome) -> None:
    """Exactly the handler's advances happen: the user event's, or NEXT's once, or none at all."""
    if event in machine_.events:
        expected = handler_chain(machine_, before.state, event)
    elif next_due:
        expected = handler_chain(machine_, before.state, NEXT)
    else:
        expected = ()
    assert outcome.transitions == expected
    assert outcome.next_fired == next_due
    stack = outcome.stack
    if expected:
        assert (stack.state, stack.previous_state) == (expected[-1].to_state, expected[-1].from_state)
    else:
        assert (stack.state, stack.previous_state) == (before.state, before.previous_state)


def check_ignored(before: StackSnapshot, event: str, ignored: bool, outcome: Outcome) -> None:
    assert outcome.ignored == ignored
    if ignored:
        assert outcome.stack == before and outcome.ignored_reason
        assert outcome.transitions == () and outcome.dispatch == () and outcome.cancelled == ()
    else:
        assert outcome.ignored_reason is None


def check_outcome(machine_: Machine, before: StackSnapshot, event: str, task_ref, outcome: Outcome) -> None:
    """Every invariant of one applied event; `task_ref` is what the report named, if anything."""
    ignored = expected_ignored(before, event, task_ref)
    check_tasks_match_state(machine_, outcome)
    check_effects(before, event, outcome)
    check_removal(machine_, outcome)
    check_transitions(machine_, before, event, completes_last_task(machine_, before, event, ignored), outcome)
    check_ignored(before, event, ignored, outcome)


def note_kinds(outcome: Outcome) -> None:
    """Label what happened, so `--hypothesis-show-statistics` shows the sequences reach every rule."""
    labels = {
        "ignored": outcome.ignored,
        "NEXT fired": outcome.next_fired,
        "NEXT advanced": any(t.event == NEXT for t in outcome.transitions),
        "removed": outcome.removed,
        "dispatched": bool(outcome.dispatch),
        "cancelled": bool(outcome.cancelled),
    }
    for label, happened in labels.items():
        if happened:
            note(label)


# --- the properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(machine_=machines(), data=st.data())
def test_it_keeps_every_invariant_over_random_event_sequences(machine_, data):
    new_id = ids("i")
    snapshot = StackSnapshot(id="s", state="INIT")
    seen_ids: list[str] = []
    for _ in range(data.draw(st.integers(10, 40), label="length")):
        event, kwargs = draw_event(data, machine_, snapshot, seen_ids)
        expected = expected_rejection(machine_, snapshot, event, kwargs.get("task_ref"))
        try:
            outcome = apply_event(machine_, snapshot, event, new_id=new_id, **kwargs)
        except EventRejected as error:
            note(f"rejected: {error.code}")
            assert error.code == expected, error.message
            assert error.message and str(error) == error.message
            continue
        assert expected is None, f"{event} should have been rejected with {expected}"
        check_outcome(machine_, snapshot, event, kwargs.get("task_ref"), outcome)
        note_kinds(outcome)
        seen_ids += [t.id for t in outcome.stack.tasks]
        # A removed stack leaves the active set; the next message would start a new one in INIT.
        snapshot = StackSnapshot(id="s", state="INIT") if outcome.removed else outcome.stack


@settings(max_examples=200, deadline=None)
@given(machine_=machines(), data=st.data())
def test_it_accounts_for_every_pending_task_through_dispatch_and_cancel(machine_, data):
    """A caller that only follows `dispatch` and `cancelled` always knows which jobs should be running.

    Completing dispatched tasks in random order also never makes the engine loop on its own.
    """
    accepted = machine_.accepted_events(INIT)
    if not accepted:
        return
    new_id = ids("i")
    outcome = apply_event(machine_, StackSnapshot(id="s", state=INIT), accepted[0], new_id=new_id)
    running = list(outcome.dispatch)
    for _ in range(30):  # a machine may cycle through states with tasks forever; that is its design
        assert set(running) == {t.id for t in outcome.stack.tasks if t.status == PENDING}
        if not running or outcome.removed:
            break
        task_id = running.pop(data.draw(st.integers(0, len(running) - 1), label="which"))
        before = outcome.stack
        outcome = apply_event(machine_, before, TASK_COMPLETED, task_ref={"id": task_id}, new_id=new_id)
        check_outcome(machine_, before, TASK_COMPLETED, {"id": task_id}, outcome)
        note_kinds(outcome)
        running = [i for i in running if i not in outcome.cancelled] + list(outcome.dispatch)
