"""The transition rules of DESIGN §3 (steps 4-6), one rule per test, on hand-built machines."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from stacks.engine import (
    ERROR,
    MAX_TRANSITIONS,
    PENDING,
    SATISFIED,
    EventRejected,
    StackSnapshot,
    TaskInstance,
    Transition,
    apply_event,
    is_removable,
    merge_metadata,
)
from tests.engine_factories import NOOP, advance, ids, machine, qa_env, stack, state

_fresh_ids = ids("n")  # shared, so ids stay unique across the chained calls of one test


def apply(machine_, snapshot, event, **kwargs):
    kwargs.setdefault("new_id", _fresh_ids)
    return apply_event(machine_, snapshot, event, **kwargs)


def rejected(machine_, snapshot, event, **kwargs) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        apply(machine_, snapshot, event, **kwargs)
    return info.value


def provisioning(*statuses: str) -> StackSnapshot:
    """master in PROVISION with db-setup (p1) and cert (p2) in the given statuses."""
    first, second = statuses or (PENDING, PENDING)
    return stack("PROVISION", ("p1", "db-setup", first), ("p2", "cert", second), previous="INIT")


def two_step_machine():
    """PROVISION's NEXT leads to DEPLOY (with a task), whose NEXT leads to the task-less RUN."""
    return machine(
        state("INIT", on={"LAUNCH": [advance("PROVISION")]}),
        state("PROVISION", tasks=["db-setup"], on={"NEXT": [advance("DEPLOY")]}),
        state("DEPLOY", tasks=["deploy"], on={"NEXT": [advance("RUN")]}),
        state("RUN", on={"DESTROY": [advance("GONE")]}),
        state("GONE", terminal=True),
        events=["LAUNCH", "DESTROY"],
    )


def archiving_machine():
    """RUN's ARCHIVE ends in a terminal state that still has a task (and a NEXT it must not fire)."""
    return machine(
        state("INIT", on={"LAUNCH": [advance("RUN")]}),
        state("RUN", on={"ARCHIVE": [advance("PACKING")]}),
        state("PACKING", tasks=["pack"], on={"NEXT": [advance("ARCHIVED")]}),
        state("ARCHIVED", terminal=True, tasks=["snapshot", "notify"], on={"NEXT": [advance("RUN")]}),
        events=["LAUNCH", "ARCHIVE"],
    )


# --- user events ---------------------------------------------------------------------------------


def test_it_advances_from_init_and_dispatches_the_new_states_tasks():
    outcome = apply(qa_env(), StackSnapshot(id="master", state="INIT"), "LAUNCH", new_id=ids("t"))

    assert outcome.stack == StackSnapshot(
        id="master",
        state="PROVISION",
        previous_state="INIT",
        tasks=(TaskInstance(id="t1", name="db-setup"), TaskInstance(id="t2", name="cert")),
    )
    assert all(t.status == PENDING and t.attempts == 0 and t.error is None for t in outcome.stack.tasks)
    assert outcome.transitions == (Transition("LAUNCH", "INIT", "PROVISION"),)
    assert outcome.dispatch == ("t1", "t2")
    assert outcome.cancelled == ()
    assert not outcome.removed and not outcome.ignored and not outcome.next_fired


def test_it_rejects_an_event_the_state_does_not_accept_and_names_the_accepted_ones():
    error = rejected(qa_env(), stack("RUN"), "LAUNCH")

    assert error.code == "not_accepted"
    assert error.message == (
        "event LAUNCH is not accepted by stack master in state RUN; accepted events: DESTROY, FREEZE, UPDATE"
    )
    assert str(error) == error.message


def test_it_says_none_when_the_state_accepts_no_user_event():
    snapshot = stack("DESTROYING", ("d1", "teardown"))

    error = rejected(qa_env(), snapshot, "LAUNCH")

    assert error.code == "not_accepted"
    assert error.message.endswith("in state DESTROYING; accepted events: none")


def test_it_rejects_an_event_the_machine_does_not_declare_and_lists_its_events():
    error = rejected(qa_env(), stack("RUN"), "EXPLODE")

    assert error.code == "not_accepted"
    assert error.message == (
        "event EXPLODE is not an event of this machine; its events: LAUNCH, DESTROY, FREEZE, UPDATE"
    )


def test_it_says_none_when_the_machine_declares_no_events():
    bare = machine(state("INIT"), state("END", terminal=True), events=[])

    error = rejected(bare, stack("INIT"), "LAUNCH")

    assert error.message == "event LAUNCH is not an event of this machine; its events: none"


def test_it_rejects_an_empty_event_name():
    assert rejected(qa_env(), stack("RUN"), "").code == "bad_event"


def test_it_changes_nothing_for_a_no_op():
    snapshot = stack("RUN", previous="PROVISION")

    outcome = apply(qa_env(), snapshot, "UPDATE")

    assert outcome.stack == snapshot
    assert outcome.transitions == () and outcome.dispatch == () and outcome.cancelled == ()
    assert not outcome.removed and not outcome.ignored


def test_it_replaces_the_tasks_when_advancing_away_and_cancels_the_old_ones():
    outcome = apply(qa_env(), provisioning(SATISFIED, ERROR), "DESTROY", new_id=ids("d"))

    assert outcome.stack.state == "DESTROYING"
    assert outcome.stack.previous_state == "PROVISION"
    assert outcome.stack.tasks == (TaskInstance(id="d1", name="teardown"),)
    assert outcome.dispatch == ("d1",)
    assert outcome.cancelled == ("p1", "p2")
    assert outcome.transitions == (Transition("DESTROY", "PROVISION", "DESTROYING"),)


def test_it_treats_an_advance_into_the_same_state_as_entering_it_again():
    looping = machine(
        state("INIT", on={"LAUNCH": [advance("RUN")]}),
        state("RUN", tasks=["deploy"], on={"REDEPLOY": [advance("RUN")], "NEXT": [NOOP]}),
        state("END", terminal=True),
        events=["LAUNCH", "REDEPLOY"],
    )
    snapshot = stack("RUN", ("old", "deploy", SATISFIED), previous="INIT")

    outcome = apply(looping, snapshot, "REDEPLOY", new_id=ids("r"))

    assert outcome.stack.state == "RUN"
    assert outcome.stack.previous_state == "RUN"
    assert outcome.stack.tasks == (TaskInstance(id="r1", name="deploy", status=PENDING),)
    assert outcome.dispatch == ("r1",)
    assert outcome.cancelled == ("old",)
    assert outcome.transitions == (Transition("REDEPLOY", "RUN", "RUN"),)


def test_it_runs_a_handlers_actions_in_order():
    hopping = machine(
        state("INIT", on={"LAUNCH": [NOOP, advance("A"), advance("B")]}),
        state("A", tasks=["a"]),
        state("B", tasks=["b1", "b2"], on={"NEXT": [advance("END")]}),
        state("END", terminal=True),
        events=["LAUNCH"],
    )

    outcome = apply(hopping, stack("INIT"), "LAUNCH", new_id=ids("x"))

    assert outcome.transitions == (Transition("LAUNCH", "INIT", "A"), Transition("LAUNCH", "A", "B"))
    assert outcome.stack.state == "B"
    assert outcome.stack.previous_state == "A"
    assert [t.name for t in outcome.stack.tasks] == ["b1", "b2"]
    # A's task was created and replaced within the call: it is neither dispatched nor cancelled.
    assert outcome.dispatch == ("x2", "x3")
    assert outcome.cancelled == ()


def test_it_removes_a_stack_that_advances_into_a_terminal_state_without_tasks():
    snapshot = stack("FROZEN", previous="RUN")

    outcome = apply(qa_env(), snapshot, "DESTROY")

    assert outcome.removed
    assert outcome.stack.state == "DESTROYED"
    assert outcome.stack.previous_state == "FROZEN"
    assert outcome.dispatch == ()


def test_it_keeps_a_stack_that_enters_a_terminal_state_with_pending_tasks():
    outcome = apply(archiving_machine(), stack("RUN"), "ARCHIVE")
    outcome = apply(archiving_machine(), outcome.stack, "TASK_COMPLETED", task_ref={"name": "pack"})

    assert outcome.stack.state == "ARCHIVED"
    assert [t.status for t in outcome.stack.tasks] == [PENDING, PENDING]
    assert len(outcome.dispatch) == 2
    assert not outcome.removed


def test_it_does_not_fire_next_on_entering_a_state_without_tasks():
    outcome = apply(qa_env(), stack("RUN"), "FREEZE")

    assert outcome.stack.state == "FROZEN"  # FROZEN handles NEXT, but nothing was completed
    assert outcome.transitions == (Transition("FREEZE", "RUN", "FROZEN"),)
    assert not outcome.next_fired


def test_it_refuses_a_stack_in_a_state_the_machine_does_not_define():
    error = rejected(qa_env(), stack("RUNNING"), "DESTROY")

    assert error.code == "bad_event"
    assert "stack master is in state RUNNING, which its machine does not define" in error.message
    assert "INIT, PROVISION, RUN, FROZEN, DESTROYING, DESTROYED" in error.message


def test_it_refuses_to_advance_into_a_state_the_machine_does_not_define():
    broken = machine(state("INIT", on={"LAUNCH": [advance("NOWHERE")]}), state("END", terminal=True), events=["LAUNCH"])

    error = rejected(broken, stack("INIT"), "LAUNCH")

    assert error.code == "bad_event"
    assert "to state NOWHERE, which the machine does not define; its states: INIT, END" in error.message


def test_it_allows_up_to_the_transition_bound_in_one_event():
    many = machine(
        state("INIT", on={"GO": [advance("INIT")] * MAX_TRANSITIONS}),
        state("END", terminal=True),
        events=["GO"],
    )

    assert len(apply(many, stack("INIT"), "GO").transitions) == MAX_TRANSITIONS


def test_it_rejects_an_event_that_would_chain_more_transitions_than_the_bound():
    too_many = machine(
        state("INIT", on={"GO": [advance("INIT")] * (MAX_TRANSITIONS + 1)}),
        state("END", terminal=True),
        events=["GO"],
    )

    error = rejected(too_many, stack("INIT"), "GO")

    assert error.code == "bad_event"
    assert f"more than {MAX_TRANSITIONS} transitions" in error.message


# --- TASK_COMPLETED ------------------------------------------------------------------------------


def test_it_marks_a_task_satisfied_by_id_and_waits_for_the_others():
    outcome = apply(qa_env(), provisioning(), "TASK_COMPLETED", task_ref={"id": "p2"})

    assert outcome.stack.state == "PROVISION"
    assert [(t.id, t.status) for t in outcome.stack.tasks] == [("p1", PENDING), ("p2", SATISFIED)]
    assert outcome.transitions == () and outcome.dispatch == () and outcome.cancelled == ()
    assert not outcome.next_fired and not outcome.ignored


def test_it_marks_a_task_satisfied_by_name():
    outcome = apply(qa_env(), provisioning(), "TASK_COMPLETED", task_ref={"name": "db-setup"})

    assert [(t.id, t.status) for t in outcome.stack.tasks] == [("p1", SATISFIED), ("p2", PENDING)]


def test_it_prefers_the_id_when_a_report_carries_both_id_and_name():
    outcome = apply(qa_env(), provisioning(), "TASK_COMPLETED", task_ref={"id": "p2", "name": "db-setup"})

    assert [t.status for t in outcome.stack.tasks] == [PENDING, SATISFIED]


def test_it_fires_next_when_the_last_task_is_satisfied_and_stops_in_a_state_without_tasks():
    outcome = apply(qa_env(), provisioning(SATISFIED, PENDING), "TASK_COMPLETED", task_ref={"id": "p2"})

    assert outcome.next_fired
    assert outcome.transitions == (Transition("NEXT", "PROVISION", "RUN"),)
    assert outcome.stack.state == "RUN"
    assert outcome.stack.previous_state == "PROVISION"
    assert outcome.stack.tasks == ()
    assert outcome.cancelled == ("p1", "p2")
    assert outcome.dispatch == ()
    assert not outcome.removed


def test_it_stops_after_next_in_a_state_with_tasks_and_dispatches_them():
    snapshot = stack("PROVISION", ("p1", "db-setup"))

    outcome = apply(two_step_machine(), snapshot, "TASK_COMPLETED", task_ref={"id": "p1"}, new_id=ids("d"))

    assert outcome.transitions == (Transition("NEXT", "PROVISION", "DEPLOY"),)
    assert outcome.stack.state == "DEPLOY"
    assert outcome.stack.tasks == (TaskInstance(id="d1", name="deploy"),)
    assert outcome.dispatch == ("d1",)
    assert outcome.cancelled == ("p1",)


def test_it_does_not_fire_next_again_in_a_task_less_state_reached_by_next():
    pausing = machine(
        state("INIT", on={"LAUNCH": [advance("WORK")]}),
        state("WORK", tasks=["job"], on={"NEXT": [advance("PAUSE")]}),
        state("PAUSE", on={"NEXT": [advance("END")], "RESUME": [advance("END")]}),
        state("END", terminal=True),
        events=["LAUNCH", "RESUME"],
    )

    outcome = apply(pausing, stack("WORK", ("w1", "job")), "TASK_COMPLETED", task_ref={"id": "w1"})

    assert outcome.transitions == (Transition("NEXT", "WORK", "PAUSE"),)
    assert outcome.stack.state == "PAUSE" and not outcome.removed


def test_it_removes_a_stack_whose_next_leads_into_a_terminal_state_without_tasks():
    snapshot = stack("DESTROYING", ("d1", "teardown"), previous="RUN")

    outcome = apply(qa_env(), snapshot, "TASK_COMPLETED", task_ref={"name": "teardown"})

    assert outcome.transitions == (Transition("NEXT", "DESTROYING", "DESTROYED"),)
    assert outcome.stack.state == "DESTROYED"
    assert outcome.removed


def test_it_keeps_a_stack_whose_next_leads_into_a_terminal_state_with_tasks_until_they_are_done():
    archiving = archiving_machine()
    entered = apply(archiving, stack("PACKING", ("k1", "pack")), "TASK_COMPLETED", task_ref={"id": "k1"})
    assert entered.stack.state == "ARCHIVED" and not entered.removed
    first, second = entered.stack.tasks

    halfway = apply(archiving, entered.stack, "TASK_COMPLETED", task_ref={"id": first.id})
    assert not halfway.removed

    done = apply(archiving, halfway.stack, "TASK_COMPLETED", task_ref={"id": second.id})
    assert done.removed
    assert done.stack.state == "ARCHIVED"  # no NEXT in a terminal state, even though it handles one
    assert done.transitions == () and not done.next_fired
    assert all(t.status == SATISFIED for t in done.stack.tasks)


def test_it_clears_the_error_of_a_failed_task_that_completes_and_may_fire_next():
    snapshot = stack("PROVISION", ("p1", "db-setup", SATISFIED))
    snapshot = dataclasses.replace(
        snapshot, tasks=(*snapshot.tasks, TaskInstance(id="p2", name="cert", status=ERROR, error="boom"))
    )

    outcome = apply(qa_env(), snapshot, "TASK_COMPLETED", task_ref={"id": "p2"})

    assert outcome.stack.state == "RUN" and outcome.next_fired

    waiting = dataclasses.replace(snapshot, tasks=(TaskInstance("p1", "db-setup"), snapshot.tasks[1]))
    outcome = apply(qa_env(), waiting, "TASK_COMPLETED", task_ref={"id": "p2"})
    assert outcome.stack.tasks[1] == TaskInstance(id="p2", name="cert", status=SATISFIED, error=None)


def test_it_ignores_a_completion_for_a_task_instance_that_is_not_current():
    snapshot = provisioning()

    outcome = apply(qa_env(), snapshot, "TASK_COMPLETED", task_ref={"id": "old-7"})

    assert outcome.ignored
    assert outcome.ignored_reason == ("task instance old-7 is not current (the stack moved on or the task was retried)")
    assert outcome.stack == snapshot
    assert outcome.transitions == () and outcome.dispatch == () and outcome.cancelled == ()
    assert not outcome.removed


def test_it_ignores_a_late_completion_from_before_a_retry():
    failed = provisioning(ERROR, PENDING)
    retried = apply(qa_env(), failed, "RETRY_FAILED_TASKS").stack

    outcome = apply(qa_env(), retried, "TASK_COMPLETED", task_ref={"id": "p1"})

    assert outcome.ignored
    assert outcome.stack == retried


def test_it_ignores_a_repeated_completion_of_a_satisfied_task():
    snapshot = provisioning(SATISFIED, PENDING)

    by_id = apply(qa_env(), snapshot, "TASK_COMPLETED", task_ref={"id": "p1"})
    by_name = apply(qa_env(), snapshot, "TASK_COMPLETED", task_ref={"name": "db-setup"})

    for outcome in (by_id, by_name):
        assert outcome.ignored
        assert outcome.ignored_reason == "task db-setup (instance p1) is already satisfied"
        assert outcome.stack == snapshot
        assert not outcome.next_fired


def test_it_rejects_a_completion_for_a_task_name_the_state_does_not_have():
    error = rejected(qa_env(), provisioning(), "TASK_COMPLETED", task_ref={"name": "teardown"})

    assert error.code == "unknown_task"
    assert error.message == ("stack master has no task named teardown in state PROVISION; its tasks: db-setup, cert")


def test_it_says_so_when_a_state_has_no_tasks_to_complete_by_name():
    error = rejected(qa_env(), stack("RUN"), "TASK_COMPLETED", task_ref={"name": "db-setup"})

    assert error.message == "stack master has no task named db-setup in state RUN; it has no tasks"


@pytest.mark.parametrize("task_ref", [None, {}, {"id": ""}, {"id": 7}, {"name": None}, "p1"])
@pytest.mark.parametrize("event", ["TASK_COMPLETED", "TASK_ERROR"])
def test_it_rejects_a_task_report_without_a_usable_task_reference(event, task_ref):
    error = rejected(qa_env(), provisioning(), event, task_ref=task_ref)

    assert error.code == "bad_event"
    assert error.message.startswith(f"{event} needs the task it reports on")
    assert '{"id": ' in error.message and '{"name": ' in error.message


def test_it_stays_when_a_state_with_tasks_has_no_next_handler():
    no_next = machine(
        state("INIT", on={"LAUNCH": [advance("WORK")]}),
        state("WORK", tasks=["job"]),
        state("END", terminal=True),
        events=["LAUNCH"],
    )

    outcome = apply(no_next, stack("WORK", ("w1", "job")), "TASK_COMPLETED", task_ref={"id": "w1"})

    assert outcome.stack.state == "WORK"
    assert outcome.stack.tasks == (TaskInstance(id="w1", name="job", status=SATISFIED),)
    assert outcome.next_fired and outcome.transitions == ()
    assert not outcome.removed


def test_it_stays_when_next_is_a_no_op_and_later_completions_are_ignored():
    noop_next = machine(
        state("INIT", on={"LAUNCH": [advance("WORK")]}),
        state("WORK", tasks=["job"], on={"NEXT": [NOOP]}),
        state("END", terminal=True),
        events=["LAUNCH"],
    )

    outcome = apply(noop_next, stack("WORK", ("w1", "job")), "TASK_COMPLETED", task_ref={"id": "w1"})
    assert outcome.stack.state == "WORK" and outcome.next_fired and outcome.transitions == ()

    again = apply(noop_next, outcome.stack, "TASK_COMPLETED", task_ref={"name": "job"})
    assert again.ignored and not again.next_fired


def test_it_completes_the_unfinished_instance_when_a_state_lists_a_task_twice():
    twice = machine(
        state("INIT", on={"LAUNCH": [advance("WORK")]}),
        state("WORK", tasks=["job", "job"], on={"NEXT": [advance("END")]}),
        state("END", terminal=True),
        events=["LAUNCH"],
    )
    snapshot = stack("WORK", ("w1", "job", SATISFIED), ("w2", "job"))

    outcome = apply(twice, snapshot, "TASK_COMPLETED", task_ref={"name": "job"})

    assert outcome.stack.state == "END" and outcome.removed


# --- TASK_ERROR ----------------------------------------------------------------------------------


def test_it_marks_a_task_failed_with_the_description_and_stays():
    outcome = apply(qa_env(), provisioning(), "TASK_ERROR", task_ref={"id": "p1"}, description="db quota exceeded")

    assert outcome.stack.state == "PROVISION"
    assert outcome.stack.tasks[0] == TaskInstance(id="p1", name="db-setup", status=ERROR, error="db quota exceeded")
    assert outcome.stack.tasks[1].status == PENDING
    assert outcome.transitions == () and outcome.dispatch == () and outcome.cancelled == ()
    assert not outcome.ignored


@pytest.mark.parametrize("description", [None, ""])
def test_it_uses_a_default_message_for_a_failure_without_description(description):
    outcome = apply(qa_env(), provisioning(), "TASK_ERROR", task_ref={"name": "cert"}, description=description)

    assert outcome.stack.tasks[1].error == "task failed"


def test_it_ignores_a_repeated_failure_report_for_a_failed_task():
    failed = apply(qa_env(), provisioning(), "TASK_ERROR", task_ref={"id": "p1"}, description="first").stack

    outcome = apply(qa_env(), failed, "TASK_ERROR", task_ref={"id": "p1"}, description="second")

    assert outcome.ignored
    assert outcome.ignored_reason == (
        "task db-setup (instance p1) has already failed; the repeated error report is ignored"
    )
    assert outcome.stack == failed and outcome.stack.tasks[0].error == "first"


def test_it_ignores_a_failure_report_for_a_satisfied_task():
    snapshot = provisioning(SATISFIED, PENDING)

    outcome = apply(qa_env(), snapshot, "TASK_ERROR", task_ref={"id": "p1"}, description="late")

    assert outcome.ignored
    assert outcome.ignored_reason == "task db-setup (instance p1) is already satisfied; the error report is stale"
    assert outcome.stack == snapshot


def test_it_ignores_a_failure_report_for_a_task_instance_that_is_not_current():
    outcome = apply(qa_env(), provisioning(), "TASK_ERROR", task_ref={"id": "gone"})

    assert outcome.ignored
    assert "task instance gone is not current" in outcome.ignored_reason


def test_it_rejects_a_failure_report_for_an_unknown_task_name():
    error = rejected(qa_env(), provisioning(), "TASK_ERROR", task_ref={"name": "dns"})

    assert error.code == "unknown_task"
    assert "no task named dns in state PROVISION; its tasks: db-setup, cert" in error.message


# --- retries -------------------------------------------------------------------------------------


def test_it_retries_failed_tasks_as_new_pending_instances():
    snapshot = StackSnapshot(
        id="master",
        state="PROVISION",
        tasks=(
            TaskInstance(id="p1", name="db-setup", status=ERROR, error="boom", attempts=2),
            TaskInstance(id="p2", name="cert", status=PENDING),
        ),
    )

    outcome = apply(qa_env(), snapshot, "RETRY_FAILED_TASKS", new_id=ids("r"))

    assert outcome.stack.tasks == (
        TaskInstance(id="r1", name="db-setup", status=PENDING, error=None, attempts=2),
        TaskInstance(id="p2", name="cert", status=PENDING),
    )
    assert outcome.dispatch == ("r1",)
    assert outcome.cancelled == ("p1",)
    assert outcome.stack.state == "PROVISION" and outcome.transitions == ()


def test_it_rejects_a_retry_of_failed_tasks_when_none_failed():
    error = rejected(qa_env(), provisioning(SATISFIED, PENDING), "RETRY_FAILED_TASKS")

    assert error.code == "nothing_to_retry"
    assert error.message == "stack master has no failed tasks to retry"


def test_it_retries_pending_tasks_as_new_instances_and_leaves_the_others():
    snapshot = stack("PROVISION", ("p1", "db-setup", SATISFIED), ("p2", "cert", PENDING))
    snapshot = dataclasses.replace(snapshot, tasks=(*snapshot.tasks, TaskInstance("p3", "dns", ERROR, "x")))

    outcome = apply(qa_env(), snapshot, "RETRY_PENDING_TASKS", new_id=ids("r"))

    assert [(t.id, t.status) for t in outcome.stack.tasks] == [
        ("p1", SATISFIED),
        ("r1", PENDING),
        ("p3", ERROR),
    ]
    assert outcome.dispatch == ("r1",)
    assert outcome.cancelled == ("p2",)


def test_it_rejects_a_retry_of_pending_tasks_when_none_is_pending():
    error = rejected(qa_env(), stack("RUN"), "RETRY_PENDING_TASKS")

    assert error.code == "nothing_to_retry"
    assert error.message == "stack master has no pending tasks to retry"


# --- system events and inputs --------------------------------------------------------------------


def test_it_rejects_next_sent_from_outside():
    error = rejected(qa_env(), provisioning(SATISFIED, SATISFIED), "NEXT")

    assert error.code == "system_event"
    assert error.message == ("NEXT is fired by CloudSeam itself when a state's tasks are done; it cannot be sent")


def test_it_never_mutates_its_inputs():
    snapshot = dataclasses.replace(provisioning(SATISFIED, PENDING), metadata={"tag": "abc"})
    before = copy.deepcopy(snapshot)
    machine_ = qa_env()
    machine_before = repr(machine_)

    outcome = apply(machine_, snapshot, "TASK_COMPLETED", task_ref={"id": "p2"})

    assert snapshot == before
    assert repr(machine_) == machine_before
    assert outcome.stack is not snapshot
    assert outcome.stack.metadata == {"tag": "abc"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.stack.state = "INIT"


def test_it_returns_tasks_as_a_tuple_even_when_given_a_list():
    snapshot = StackSnapshot(id="master", state="PROVISION", tasks=[TaskInstance("p1", "db-setup")])

    outcome = apply(qa_env(), snapshot, "TASK_ERROR", task_ref={"id": "p1"})

    assert isinstance(outcome.stack.tasks, tuple)


def test_it_calls_a_stack_removable_only_in_a_terminal_state_with_all_tasks_satisfied():
    archiving = archiving_machine()

    assert is_removable(archiving, stack("ARCHIVED", ("a1", "snapshot", SATISFIED), ("a2", "notify", SATISFIED)))
    assert not is_removable(archiving, stack("ARCHIVED", ("a1", "snapshot", SATISFIED), ("a2", "notify")))
    assert not is_removable(archiving, stack("RUN"))
    assert is_removable(qa_env(), stack("DESTROYED"))


# --- metadata ------------------------------------------------------------------------------------


def test_it_merges_metadata_flatly_and_new_values_win():
    old = {"image": "v1", "owner": "ana"}

    merged = merge_metadata(old, {"image": "v2", "ttl": 3, "public": False})

    assert merged == {"image": "v2", "owner": "ana", "ttl": 3, "public": False}
    assert old == {"image": "v1", "owner": "ana"}


def test_it_removes_metadata_keys_set_to_none():
    assert merge_metadata({"image": "v1", "owner": "ana"}, {"owner": None, "absent": None}) == {"image": "v1"}


def test_it_copies_the_metadata_when_nothing_is_merged():
    old = {"image": "v1"}

    merged = merge_metadata(old, None)

    assert merged == old and merged is not old
    assert merge_metadata({}, {}) == {}


def test_it_reports_the_last_version_of_tasks_it_retires():
    """A task completed and then left behind by NEXT must be stored as SATISFIED, not as it was."""
    m = qa_env()
    launched = apply_event(m, stack("INIT"), "LAUNCH", new_id=ids())
    first, second = launched.stack.tasks
    done_one = apply_event(m, launched.stack, "TASK_COMPLETED", task_ref={"id": first.id}, new_id=ids("b"))
    done_two = apply_event(m, done_one.stack, "TASK_COMPLETED", task_ref={"id": second.id}, new_id=ids("c"))
    assert done_two.stack.state != launched.stack.state
    assert {(t.id, t.status) for t in done_two.retired} == {(first.id, "SATISFIED"), (second.id, "SATISFIED")}
    assert done_one.retired == ()


def test_it_leaves_running_pending_tasks_alone_when_retrying_pending_ones():
    m = qa_env()
    launched = apply_event(m, stack("INIT"), "LAUNCH", new_id=ids())
    first, second = launched.stack.tasks
    busy = dataclasses.replace(launched.stack, tasks=(dataclasses.replace(first, running=True), second))
    retried = apply_event(m, busy, "RETRY_PENDING_TASKS", new_id=ids("r"))
    assert retried.stack.tasks[0].id == first.id and retried.stack.tasks[1].id == "r1"
    assert retried.dispatch == ("r1",) and retried.cancelled == (second.id,)
    all_busy = dataclasses.replace(busy, tasks=tuple(dataclasses.replace(t, running=True) for t in busy.tasks))
    with pytest.raises(EventRejected, match="its pending tasks are running right now"):
        apply_event(m, all_busy, "RETRY_PENDING_TASKS", new_id=ids("x"))


def test_it_suggests_the_event_a_typo_meant():
    with pytest.raises(EventRejected) as error:
        apply_event(qa_env(), stack("RUN"), "FREEZ", new_id=ids())
    assert error.value.message.endswith("; did you mean FREEZE?")


# --- compatibility with the original CloudSeam (issue #7) ---------------------------------------


def test_it_accepts_an_event_whose_action_list_is_empty_and_does_nothing():
    empty = machine(
        state("INIT", on={"LAUNCH": [advance("WORK")]}),
        state("WORK", tasks=["job"], on={"NEXT": [], "ACCESS": []}),
        state("END", terminal=True),
        events=["LAUNCH", "ACCESS"],
    )
    snapshot = stack("WORK", ("w1", "job"), previous="INIT")

    accessed = apply(empty, snapshot, "ACCESS")
    assert accessed.stack == snapshot
    assert accessed.transitions == () and accessed.dispatch == () and accessed.cancelled == ()
    assert not accessed.ignored and not accessed.removed

    done = apply(empty, snapshot, "TASK_COMPLETED", task_ref={"id": "w1"})
    assert done.stack.state == "WORK" and done.next_fired and done.transitions == ()


def test_it_reads_a_task_echoed_back_whole_by_its_id_else_its_name():
    echoed = {"id": "p2", "name": "db-setup", "executor": "external", "config": {}}
    by_id = apply(qa_env(), provisioning(), "TASK_COMPLETED", task_ref=echoed)
    assert [t.status for t in by_id.stack.tasks] == [PENDING, SATISFIED]  # the id wins over the name

    original = {"name": "cert", "executor": "lambda", "config": {"name": "cert"}}
    by_name = apply(qa_env(), provisioning(), "TASK_ERROR", task_ref=original, description="no quota")
    assert by_name.stack.tasks[1].status == ERROR and by_name.stack.tasks[1].error == "no quota"
