"""handle_event against a real database: run on SQLite, and on PostgreSQL by `make test`'s second pass."""

from __future__ import annotations

import threading

import django_rq
import pytest
from django.db import connection

from machines_app.services import save_machine
from stacks.models import Stack, StackEvent, Task
from stacks.services import handle_event, update_metadata, upgrade_machine
from tests.conftest import SIMPLE_MACHINE

pytestmark = pytest.mark.postgres


def launch(stack_id="feature-1", **extra):
    return handle_event({"stackId": stack_id, "event": "LAUNCH", "machine": "simple", **extra},
                        actor="tester", source="api")


def complete(stack_id, name, **extra):
    return handle_event({"stackId": stack_id, "event": "TASK_COMPLETED", "task": {"name": name}, **extra},
                        actor="worker", source="worker")


def test_it_creates_a_stack_pinned_to_the_current_version(simple_machine):
    result = launch(metadata={"apiImageTag": "e724e9"})
    assert result.status == 200
    body = result.body
    assert body["state"] == "PROVISION" and body["previousState"] == "INIT"
    assert body["machine"] == "simple" and body["machineVersion"] == simple_machine.number
    assert [t["name"] for t in body["tasks"]] == ["db", "cert"]
    assert {t["status"] for t in body["tasks"]} == {"PENDING"}
    assert body["metadata"] == {"apiImageTag": "e724e9"}
    entry = StackEvent.objects.get(stack_key="feature-1")
    assert (entry.outcome, entry.from_state, entry.to_state, entry.actor) == ("applied", None, "PROVISION", "tester")


def test_it_refuses_an_unknown_stack_without_machine_and_records_it(simple_machine):
    result = handle_event({"stackId": "nope", "event": "LAUNCH"}, actor="tester", source="api")
    assert result.status == 404
    assert "does not exist" in result.body["error"] and "machine" in result.body["error"]
    assert not Stack.objects.exists()
    assert StackEvent.objects.get(stack_key="nope").outcome == "rejected"


def test_it_refuses_an_unknown_machine(simple_machine):
    result = handle_event({"stackId": "a", "event": "LAUNCH", "machine": "ghost"}, actor="t", source="api")
    assert result.status == 404
    assert "machine ghost does not exist" in result.body["error"] and "simple" in result.body["error"]


def test_it_creates_nothing_when_the_first_event_is_not_accepted(simple_machine):
    result = handle_event({"stackId": "a", "event": "DESTROY", "machine": "simple", "metadata": {"k": 1}},
                          actor="t", source="api")
    assert result.status == 409
    assert "DESTROY is not accepted" in result.body["error"]
    assert not Stack.objects.exists()


def test_it_rolls_back_metadata_of_a_rejected_event(simple_machine):
    launch(metadata={"keep": "yes"})
    result = handle_event({"stackId": "feature-1", "event": "DEPLOY", "metadata": {"keep": "no", "new": 1}},
                          actor="t", source="api")
    assert result.status == 409
    assert Stack.objects.get(key="feature-1").metadata == {"keep": "yes"}
    rejected = StackEvent.objects.filter(stack_key="feature-1", outcome="rejected").get()
    assert rejected.metadata == {"keep": "no", "new": 1} and "DEPLOY" in rejected.error


def test_it_refuses_a_different_machine_for_an_existing_stack(simple_machine):
    save_machine("other", SIMPLE_MACHINE.replace("NOTE", "NOTE2"), actor="t")
    launch()
    result = handle_event({"stackId": "feature-1", "event": "DESTROY", "machine": "other"}, actor="t", source="api")
    assert result.status == 409 and "runs machine simple" in result.body["error"]


def test_it_fires_next_when_the_last_task_completes(simple_machine):
    launch()
    assert complete("feature-1", "db").body["state"] == "PROVISION"
    body = complete("feature-1", "cert").body
    assert body["state"] == "RUN" and body["tasks"] == []
    finished = Task.objects.filter(stack__key="feature-1").values_list("name", "status", "current")
    assert sorted(finished) == [("cert", "SATISFIED", False), ("db", "SATISFIED", False)]
    history = list(StackEvent.objects.filter(stack_key="feature-1").order_by("id").values_list("event", "to_state"))
    assert history == [("LAUNCH", "PROVISION"), ("TASK_COMPLETED", "PROVISION"), ("TASK_COMPLETED", "RUN")]


def test_it_ignores_and_records_a_stale_completion(simple_machine):
    first = launch().body["tasks"][0]["id"]
    handle_event({"stackId": "feature-1", "event": "TASK_ERROR", "task": {"id": first}, "description": "boom"},
                 actor="worker", source="worker")
    retried = handle_event({"stackId": "feature-1", "event": "RETRY_FAILED_TASKS"}, actor="t", source="api").body
    assert retried["tasks"][0]["id"] != first and retried["tasks"][0]["status"] == "PENDING"
    stale = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"id": first}},
                         actor="worker", source="worker")
    assert stale.status == 200 and stale.outcome == "ignored"
    assert Stack.objects.get(key="feature-1").current_tasks()[0].status == "PENDING"
    assert StackEvent.objects.filter(outcome="ignored").count() == 1
    assert Task.objects.get(pk=first).current is False


def test_it_answers_a_repeated_message_id_with_the_first_result(simple_machine):
    first = launch(id="msg-1")
    again = launch(id="msg-1")
    assert again.repeated and again.status == first.status and again.body == first.body
    assert StackEvent.objects.filter(stack_key="feature-1").count() == 1
    rejected = handle_event({"stackId": "feature-1", "event": "NOTE", "id": "msg-2"}, actor="t", source="api")
    assert handle_event({"stackId": "feature-1", "event": "NOTE", "id": "msg-2"}, actor="t",
                        source="api").body == rejected.body


def test_it_removes_a_finished_stack_keeping_its_history_and_freeing_the_id(simple_machine):
    launch()
    complete("feature-1", "db")
    complete("feature-1", "cert")
    handle_event({"stackId": "feature-1", "event": "DESTROY"}, actor="t", source="api")
    body = complete("feature-1", "nuke").body
    assert body["removed"] is True and body["state"] == "TEARDOWN"
    old = Stack.objects.get(key="feature-1")
    assert old.removed_at is not None and old.events.count() == 5
    again = launch()
    assert again.status == 200 and again.body["removed"] is False
    assert Stack.objects.filter(key="feature-1").count() == 2
    assert Stack.objects.active().get(key="feature-1").events.count() == 1


def test_it_removes_a_stack_entering_a_terminal_state_without_tasks(simple_machine):
    launch()
    body = handle_event({"stackId": "feature-1", "event": "DESTROY"}, actor="t", source="api").body
    assert body["state"] == "GONE" and body["removed"] is True
    assert not Stack.objects.active().exists()


def test_it_updates_metadata_in_any_state_and_null_removes_a_key(simple_machine):
    launch(metadata={"a": 1, "b": "two"})
    result = update_metadata("feature-1", {"a": None, "c": True}, actor="ada", source="admin")
    assert result.status == 200 and result.body["metadata"] == {"b": "two", "c": True}
    entry = StackEvent.objects.filter(event="UPDATE_METADATA").get()
    assert entry.actor == "ada" and entry.source == "admin"
    nested = update_metadata("feature-1", {"x": {"y": 1}}, actor="ada", source="admin")
    assert nested.status == 400 and "flat" in nested.body["error"]


def test_it_moves_a_stack_to_the_newest_version_only_when_its_state_exists(simple_machine):
    launch()
    complete("feature-1", "db")
    complete("feature-1", "cert")  # now RUN
    save_machine("simple", SIMPLE_MACHINE.replace("RUN", "SERVE"), actor="t")
    refused = upgrade_machine("feature-1", actor="ada", source="admin")
    assert refused.status == 409 and "state RUN does not exist in version 2" in refused.body["error"]
    assert Stack.objects.get(key="feature-1").machine_version.number == 1
    save_machine("simple", SIMPLE_MACHINE + "\n# comment\n", actor="t")
    moved = upgrade_machine("feature-1", actor="ada", source="admin")
    assert moved.status == 200 and moved.body["machineVersion"] == 3


def test_it_enqueues_one_job_per_task_only_after_commit(simple_machine, django_capture_on_commit_callbacks):
    queue = django_rq.get_queue("default")
    queue.empty()
    save_machine("runner", SIMPLE_MACHINE.replace("{executor: external}", "{executor: sleep, config: {seconds: 0}}"),
                 actor="t")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        body = handle_event({"stackId": "r", "event": "LAUNCH", "machine": "runner"}, actor="t", source="api").body
    assert queue.count == 0 and len(callbacks) == 1
    callbacks[0]()
    assert sorted(queue.job_ids) == sorted(f"task-{t['id']}" for t in body["tasks"])


def _threads(count, target):
    errors = []

    def run(i):
        try:
            target(i)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_it_loses_no_metadata_under_concurrent_events(simple_machine):
    launch()
    results = []
    _threads(8, lambda i: results.append(
        # UPDATE_METADATA: every one is applied (a repeated TASK_ERROR is now ignored, metadata and all).
        handle_event({"stackId": "feature-1", "event": "UPDATE_METADATA", "metadata": {f"k{i}": i}},
                     actor="t", source="api").status))
    assert results == [200] * 8
    assert Stack.objects.get(key="feature-1").metadata == {f"k{i}": i for i in range(8)}


@pytest.mark.django_db(transaction=True)
def test_it_fires_next_once_when_tasks_complete_concurrently(simple_machine):
    launch()
    _threads(2, lambda i: complete("feature-1", ["db", "cert"][i]))
    stack = Stack.objects.get(key="feature-1")
    assert stack.state == "RUN"
    assert StackEvent.objects.filter(stack=stack, to_state="RUN", from_state="PROVISION").count() == 1
    assert StackEvent.objects.filter(stack=stack, outcome="applied").count() == 3


@pytest.mark.django_db(transaction=True)
def test_it_creates_one_stack_from_concurrent_launches(simple_machine):
    statuses = []
    _threads(6, lambda i: statuses.append(launch("race").status))
    assert Stack.objects.filter(key="race").count() == 1
    assert statuses.count(200) == 1 and statuses.count(409) == 5  # LAUNCH is not accepted in PROVISION


def test_it_changes_nothing_for_a_stale_completion_not_even_metadata(simple_machine):
    first = launch(metadata={"keep": 1}).body["tasks"][0]["id"]
    handle_event({"stackId": "feature-1", "event": "TASK_ERROR", "task": {"id": first}}, actor="w", source="worker")
    handle_event({"stackId": "feature-1", "event": "RETRY_FAILED_TASKS"}, actor="t", source="api")
    before = Stack.objects.get(key="feature-1")
    late = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"id": first},
                         "metadata": {"late": "x"}}, actor="worker", source="worker")
    after = Stack.objects.get(key="feature-1")
    assert late.outcome == "ignored" and late.body["metadata"] == {"keep": 1}
    assert after.metadata == {"keep": 1} and after.updated_at == before.updated_at
    assert StackEvent.objects.get(outcome="ignored").metadata == {"late": "x"}  # recorded as sent


def test_it_does_not_let_a_refused_sender_block_a_message_id(simple_machine):
    from cloudseam_site.accounts.roles import Actor

    launch()
    outsider = Actor("mallory", frozenset({"other"}))
    refused = handle_event({"stackId": "feature-1", "event": "NOTE", "id": "build-42"}, actor=outsider,
                           source="api")
    assert refused.status == 403
    rightful = handle_event({"stackId": "feature-1", "event": "DESTROY", "id": "build-42"}, actor="ci", source="api")
    assert rightful.status == 200 and rightful.body["removed"] is True


def test_it_does_not_retry_a_pending_task_whose_worker_is_alive(simple_machine):
    from django.utils import timezone

    body = launch().body
    running, waiting = body["tasks"]
    Task.objects.filter(pk=running["id"]).update(started_at=timezone.now(), heartbeat_at=timezone.now())
    retried = handle_event({"stackId": "feature-1", "event": "RETRY_PENDING_TASKS"}, actor="t", source="api").body
    assert retried["tasks"][0]["id"] == running["id"] and retried["tasks"][1]["id"] != waiting["id"]


def test_it_names_tasks_in_history_by_name_and_instance(simple_machine):
    first = launch().body["tasks"][0]["id"]
    complete("feature-1", "cert")
    handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"id": first}}, actor="w", source="worker")
    labels = list(StackEvent.objects.filter(event="TASK_COMPLETED").order_by("id").values_list("task_ref", flat=True))
    assert labels == ["cert", f"db (instance {first[:8]})"]


# --- compatibility with the original CloudSeam (issue #7) ---------------------------------------


def test_it_accepts_a_completion_whose_task_carries_more_keys(simple_machine):
    db, cert = launch().body["tasks"]
    ours = {"id": cert["id"], "name": "cert", "executor": "external", "config": {}}
    result = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": ours},
                          actor="worker", source="worker")
    assert result.status == 200 and result.body["tasks"][1]["status"] == "SATISFIED"
    original = {"name": "db", "executor": "lambda", "config": {"name": "db-setup"}}
    result = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": original},
                          actor="worker", source="worker")
    assert result.status == 200 and result.body["state"] == "RUN"
    labels = list(StackEvent.objects.filter(event="TASK_COMPLETED").order_by("id").values_list("task_ref", flat=True))
    assert labels == [f"cert (instance {cert['id'][:8]})", "db"]


@pytest.mark.parametrize(
    "task,words",
    [
        ({"executor": "external", "config": {}}, "the task object has neither id nor name"),
        ({"id": 7, "name": "db"}, "its id must be the 32 hexadecimal characters sent with the task, got a number"),
        ({"name": ["db"], "executor": "external"}, "its name must be a task name of the machine, got a list"),
        ("db", 'task must be {"name": "<task name>"} or {"id": "<task instance id>"}; got \'db\''),
    ],
)
def test_it_refuses_a_task_object_without_a_usable_id_or_name(simple_machine, task, words):
    launch()
    result = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": task},
                          actor="worker", source="worker")
    assert result.status == 400 and words in result.body["error"]
    assert result.body["error"].startswith("task must be")
    assert {t.status for t in Task.objects.filter(stack__key="feature-1")} == {"PENDING"}


def test_it_warns_that_the_metadata_of_an_ignored_completion_was_not_applied(simple_machine):
    first = launch(metadata={"keep": 1}).body["tasks"][0]["id"]
    complete("feature-1", "db")
    late = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"id": first},
                         "metadata": {"version": "2", "url": "x"}}, actor="worker", source="worker")
    assert late.status == 200 and late.outcome == "ignored" and late.body["metadata"] == {"keep": 1}
    assert late.body["warning"] == (
        "The metadata sent with this TASK_COMPLETED (url, version) was not applied because the event was "
        "ignored; send it again with an event that is applied, e.g. UPDATE_METADATA."
    )
    entry = StackEvent.objects.get(outcome="ignored")
    assert entry.error == f"task db (instance {first}) is already satisfied. {late.body['warning']}"
    assert entry.metadata == {"version": "2", "url": "x"}
    silent = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"id": first}},
                          actor="worker", source="worker")
    assert silent.outcome == "ignored" and "warning" not in silent.body  # nothing was dropped


def test_it_warns_that_the_metadata_of_a_refused_completion_was_not_applied(simple_machine):
    launch()
    refused = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"name": "nuke"},
                            "metadata": {"version": "2"}, "id": "w-1"}, actor="worker", source="worker")
    assert refused.status == 409 and "no task named nuke" in refused.body["error"]
    assert refused.body["warning"].startswith(
        "The metadata sent with this TASK_COMPLETED (version) was not applied because the event was refused"
    )
    entry = StackEvent.objects.get(outcome="rejected")
    assert entry.error == f"{refused.body['error']}. {refused.body['warning']}"
    again = handle_event({"stackId": "feature-1", "event": "TASK_COMPLETED", "task": {"name": "nuke"},
                          "metadata": {"version": "2"}, "id": "w-1"}, actor="worker", source="worker")
    assert again.repeated and again.body == refused.body
    assert Stack.objects.get(key="feature-1").metadata == {}
