"""A stack's history replays through the engine to its stored state (stacks.replay, verify_history).

Scenarios go through `handle_event` as every sender does, then `stacks.history.verify` replays the
recorded entries; a Hypothesis property sends random event sequences and checks every stack it made.
"""

from __future__ import annotations

import itertools

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machines_app.services import save_machine
from stacks import history, replay
from stacks.models import Stack, StackEvent, Task
from stacks.services import handle_event
from tests.conftest import SIMPLE_MACHINE

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def send(stack_id, event, **extra):
    return handle_event({"stackId": stack_id, "event": event, **extra}, actor="tester", source="api")


def check(stack_id):
    stack = Stack.objects.latest_for(stack_id)
    assert history.verify(stack) == []
    return stack


def test_it_replays_a_whole_run_to_the_stored_state(simple_machine):
    send("a", "LAUNCH", machine="simple", metadata={"tag": "1"})
    send("a", "TASK_ERROR", task={"name": "db"}, description="disk full")
    send("a", "RETRY_FAILED_TASKS")
    send("a", "TASK_COMPLETED", task={"name": "db"})
    send("a", "TASK_COMPLETED", task={"name": "db"})  # ignored: already satisfied
    send("a", "UPDATE_METADATA", metadata={"tag": None, "owner": "me"})
    send("a", "NOPE")  # rejected
    send("a", "TASK_COMPLETED", task={"name": "cert"})
    send("a", "DEPLOY")
    stack = check("a")
    frames = history.frames(stack)
    assert len(frames) == StackEvent.objects.filter(stack=stack).count()
    assert [f["state"] for f in frames][:2] == ["PROVISION", "PROVISION"]
    assert frames[-1]["path"]["edges"] == {"INIT>PROVISION": 1, "PROVISION>RUN": 1, "RUN>PROVISION": 1}
    assert frames[-1]["path"]["failed"] == ["PROVISION"]
    assert frames[-1]["metadata"] == {"owner": "me"}
    assert frames[1]["tasks"][0] == {"name": "db", "status": "ERROR"}


def test_it_replays_a_removed_stack_and_a_new_stack_with_the_same_id(simple_machine):
    send("b", "LAUNCH", machine="simple")
    send("b", "DESTROY")
    removed = Stack.objects.get(key="b")
    assert removed.removed and history.verify(removed) == []
    send("b", "LAUNCH", machine="simple")
    send("b", "TASK_COMPLETED", task={"name": "cert"})
    assert check("b").pk != removed.pk
    assert history.verify(removed) == []


def test_it_replays_a_retry_of_one_task_and_an_upgrade(simple_machine):
    send("c", "LAUNCH", machine="simple")
    send("c", "TASK_ERROR", task={"name": "db"}, description="x")
    send("c", "TASK_ERROR", task={"name": "cert"}, description="y")
    assert send("c", "RETRY_TASK", task={"name": "cert"}).status == 200
    send("c", "TASK_COMPLETED", task={"name": "cert"})
    save_machine("simple", SIMPLE_MACHINE.replace("NOTE: [{action: no-op}]", "NOTE: []"), actor="t")
    assert send("c", "UPGRADE_MACHINE").status == 200
    stack = check("c")
    assert [(t.name, t.status) for t in stack.current_tasks()] == [("db", "ERROR"), ("cert", "SATISFIED")]
    assert history.frames(stack)[-1]["version"] == 2


def test_it_names_what_differs_and_verify_history_exits_1(simple_machine, capsys):
    send("d", "LAUNCH", machine="simple")
    Stack.objects.filter(key="d").update(state="RUN")  # not through the one door: history disagrees
    with pytest.raises(CommandError) as failed:
        call_command("verify_history", "d")
    assert failed.value.returncode == 1
    assert "state: replay gives 'PROVISION', stored 'RUN'" in capsys.readouterr().out
    send("e", "LAUNCH", machine="simple")
    call_command("verify_history", "e")
    assert "1 stack(s) checked, 0 with differences" in capsys.readouterr().out


def test_it_reads_task_names_from_history_labels():
    assert replay.task_name("db") == "db"
    assert replay.task_name("db (instance 1a2b3c4d)") == "db"
    assert replay.task_name("instance 1a2b3c4d") is None


# --- the property: any sequence through handle_event replays to the stored stack --------------------

STEP = st.one_of(
    st.sampled_from(["LAUNCH", "DEPLOY", "DESTROY", "NOTE", "RETRY_FAILED_TASKS", "RETRY_PENDING_TASKS",
                     "UPGRADE_MACHINE", "NEXT", "BOGUS"]).map(lambda e: {"event": e}),
    st.tuples(st.sampled_from(["TASK_COMPLETED", "TASK_ERROR", "RETRY_TASK"]),
              st.sampled_from(["db", "cert", "nuke"])).map(lambda p: {"event": p[0], "task": {"name": p[1]}}),
    st.tuples(st.sampled_from(["LAUNCH", "UPDATE_METADATA", "TASK_COMPLETED"]),
              st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(st.none(), st.integers(0, 3)),
                              max_size=2)).map(
        lambda p: {"event": p[0], "metadata": p[1], **({"task": {"name": "db"}} if p[0] == "TASK_COMPLETED" else {})}),
)
IDS = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.one_of(STEP, st.sampled_from(["TASK_COMPLETED", "TASK_ERROR"]).map(
    lambda e: {"event": e, "byId": True})), min_size=1, max_size=25), data=st.data())
def test_it_replays_any_event_sequence_to_the_stored_stack(simple_machine, steps, data):
    """Random messages, some reporting on a task instance by id (a current one or a replaced, stale one)."""
    stack_id = f"p{next(IDS)}"
    for step in steps:
        message = {"stackId": stack_id, **step}
        if message.pop("byId", False):
            instances = list(Task.objects.filter(stack__key=stack_id).order_by("created_at")
                             .values_list("id", flat=True))
            if not instances:
                continue
            message["task"] = {"id": data.draw(st.sampled_from(instances))}
        if step["event"] == "LAUNCH":
            message["machine"] = "simple"
        handle_event(message, actor="hypothesis", source=data.draw(st.sampled_from(["api", "worker"])))
    for stack in Stack.objects.select_related("machine", "machine_version").filter(key=stack_id):
        assert history.verify(stack) == [], [e.event for e in stack.events.order_by("id")]


def test_it_keeps_replay_free_of_django():
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / "stacks" / "replay.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "django" or m.startswith("stacks.models") for m in modules if m)


class _Rollback(Exception):
    pass


def test_it_replays_every_stack_the_service_tests_make(simple_machine):
    """verify_history over the stacks of tests/test_services.py: each of its plain tests runs again here,
    in a savepoint rolled back afterwards, and every stack it left must replay to its stored state."""
    import inspect

    from django.db import transaction

    from tests import test_services

    ran = []
    for name, test in vars(test_services).items():
        if not name.startswith("test_it_") or list(inspect.signature(test).parameters) != ["simple_machine"]:
            continue  # the concurrent ones need real transactions, the parametrized ones their parameters
        if any(mark.name == "django_db" for mark in getattr(test, "pytestmark", [])):
            continue
        try:
            with transaction.atomic():
                test(simple_machine)
                for stack in Stack.objects.select_related("machine", "machine_version"):
                    assert history.verify(stack) == [], (name, stack.key, stack.pk)
                raise _Rollback
        except _Rollback:
            ran.append(name)
    assert len(ran) >= 15, ran
