"""stacks.prepared and cloudseam_site.prepared_sql: statements, built once, must read and write what the ORM would."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from cloudseam_site import prepared_sql
from stacks import prepared
from stacks.models import Stack, StackEvent, Task
from stacks.services import handle_event

pytestmark = pytest.mark.postgres


def launch(stack_id: str) -> Stack:
    result = handle_event({"stackId": stack_id, "event": "LAUNCH", "machine": "simple",
                           "metadata": {"owner": "ana", "note": "ü ✓"}}, actor="tests", source="tests")
    assert result.status == 200, result.body
    return Stack.objects.get(key=stack_id, removed_at__isnull=True)


def test_it_reads_the_same_stack_as_the_queryset(simple_machine):
    expected = launch("feature-1")
    launch("feature-2")
    with transaction.atomic():
        found = prepared.lock_active_stack("feature-1")
    fields = [f.attname for f in Stack._meta.concrete_fields]
    assert [getattr(found, f) for f in fields] == [getattr(expected, f) for f in fields]
    assert found.metadata == {"owner": "ana", "note": "ü ✓"}
    assert found.machine.name == "simple"
    assert found.machine_version.number == simple_machine.number
    assert found.machine_version.spec is simple_machine.spec
    assert found._state.adding is False


def test_it_finds_nothing_for_a_removed_or_unknown_stack(simple_machine):
    stack = launch("feature-1")
    Stack.objects.filter(pk=stack.pk).update(removed_at=stack.created_at)
    with transaction.atomic():
        assert prepared.lock_active_stack("feature-1") is None
        assert prepared.lock_active_stack("nobody") is None


def test_a_machine_loaded_with_the_stack_reads_its_other_fields_fresh(simple_machine):
    launch("feature-1")
    with transaction.atomic():
        stack = prepared.lock_active_stack("feature-1")
    assert stack.machine.current_version_id == simple_machine.pk


def test_it_reads_the_current_tasks_in_order(simple_machine):
    stack = launch("feature-1")
    expected = list(stack.tasks.filter(current=True).order_by("position"))
    assert expected, "the simple machine's first state has tasks"
    with transaction.atomic():
        found = prepared.lock_current_tasks(stack.pk)
    fields = [f.attname for f in Task._meta.concrete_fields]
    assert [[getattr(t, f) for f in fields] for t in found] == [[getattr(t, f) for f in fields] for t in expected]


def test_a_claimed_task_reads_the_current_tasks_with_their_stack_as_the_queryset(simple_machine):
    stack = launch("feature-1")
    expected = list(Task.objects.filter(stack_id=stack.pk, current=True).select_related(
        "stack__machine", "stack__machine_version").order_by("position"))
    found = prepared.current_tasks_with_stack(stack.pk)
    fields = [f.attname for f in Task._meta.concrete_fields]
    assert [[getattr(t, f) for f in fields] for t in found] == [[getattr(t, f) for f in fields] for t in expected]
    stack_fields = [f.attname for f in Stack._meta.concrete_fields]
    assert [getattr(found[0].stack, f) for f in stack_fields] == [getattr(expected[0].stack, f) for f in stack_fields]
    assert all(t.stack is found[0].stack for t in found)  # one Stack for all rows
    assert found[0].stack.machine.name == "simple"
    assert found[0].stack.machine_version.spec is simple_machine.spec
    assert prepared.current_tasks_with_stack(-1) == []


def test_an_update_with_a_condition_changes_only_a_matching_row(simple_machine):
    stack = launch("feature-1")
    with transaction.atomic():
        assert prepared_sql.update(Stack(pk=stack.pk, state="ELSEWHERE"), ["state"], seq=stack.seq + 100) == 0
        assert prepared_sql.update(Stack(pk=stack.pk, state="ELSEWHERE"), ["state"], seq=stack.seq) == 1
    assert Stack.objects.get(pk=stack.pk).state == "ELSEWHERE"


def test_it_updates_only_the_named_fields_and_stamps_updated_at(simple_machine):
    stack = launch("feature-1")
    before = stack.updated_at
    stack.metadata, stack.seq, stack.state = {"x": "ü", "list": [None, True]}, 41, "SOMEWHERE"
    with transaction.atomic():
        prepared_sql.update(stack, ["metadata", "seq", "updated_at"])
    stored = Stack.objects.get(pk=stack.pk)
    assert stored.metadata == {"x": "ü", "list": [None, True]}
    assert stored.seq == 41
    assert stored.state != "SOMEWHERE"  # not named, not written
    assert stored.updated_at > before


def test_it_inserts_a_row_and_gives_it_its_key(simple_machine):
    stack = launch("feature-1")
    with transaction.atomic():
        event = prepared_sql.insert(StackEvent(stack=stack, stack_key=stack.key, event="NOTE", source="tests",
                                           outcome="applied", metadata={"k": [1, {"a": None}]},
                                           response={"ok": True}, message_id=None))
    stored = StackEvent.objects.get(pk=event.pk)
    assert (stored.stack_id, stored.event, stored.metadata, stored.response, stored.message_id) == (
        stack.pk, "NOTE", {"k": [1, {"a": None}]}, {"ok": True}, None)
    assert stored.created_at == event.created_at
    assert event._state.adding is False


def test_an_event_still_costs_the_same_statements(simple_machine):
    launch("feature-1")
    with CaptureQueriesContext(connection) as first:
        handle_event({"stackId": "feature-1", "event": "UPDATE_METADATA", "metadata": {"a": 1}},
                     actor="tests", source="tests")
    with CaptureQueriesContext(connection) as second:
        handle_event({"stackId": "feature-1", "event": "UPDATE_METADATA", "metadata": {"a": 2}},
                     actor="tests", source="tests")
    assert len(second) == len(first)
    statements = [q["sql"].split()[0].upper() for q in second.captured_queries]
    assert statements.count("SELECT") == 2 and statements.count("UPDATE") == 1 and statements.count("INSERT") == 1
    assert Stack.objects.get(key="feature-1").metadata["a"] == 2


def test_a_bearer_token_is_checked_in_one_statement(simple_machine, bearer, client):
    headers = bearer("operator")
    launch("feature-1")
    client.get("/api/stacks", **headers)  # the first use also stamps the token's last_used_at
    with CaptureQueriesContext(connection) as captured:
        answer = client.post("/api/events", {"stackId": "feature-1", "event": "UPDATE_METADATA",
                                              "metadata": {"a": "b"}}, content_type="application/json", **headers)
    assert answer.status_code == 200, answer.content
    before_begin = [q["sql"] for q in captured.captured_queries][:2]
    assert "stacks_apitoken" in before_begin[0] and before_begin[1].upper().startswith(("BEGIN", "SAVEPOINT")), (
        before_begin)


def test_a_token_limited_to_machines_still_is(simple_machine, make_user, client):
    from cloudseam_site.accounts.tokens import issue_token
    from machines_app.models import Machine
    from machines_app.services import save_machine

    save_machine("other", "version: 1\nevents: [GO]\nstates:\n  INIT:\n    on:\n      GO: [{action: advance, "
                 "state: END}]\n  END:\n    terminal: true\n", actor="tests", source="tests")
    launch("feature-1")
    _, raw = issue_token(None, make_user("limited", "operator"), name="t", role="operator",
                         machines=[Machine.objects.get(name="other")])
    answer = client.post("/api/events", {"stackId": "feature-1", "event": "UPDATE_METADATA", "metadata": {"a": "b"}},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 403, answer.content
    assert "may not change stacks of machine simple" in answer.json()["error"]
