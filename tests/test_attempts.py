"""Every task attempt is kept (issue #8): recorded by jobs and reports, bounded, readable through the API.

Service tests (SQLite, and PostgreSQL in `make test`'s second pass): jobs are run in-process with
`run_task`, as tests/test_jobs.py does.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from cloudseam_site.accounts.tokens import issue_token
from machines_app.services import save_machine
from stacks import attempts
from stacks.models import Stack, StackEvent, Task, TaskAttempt
from stacks.runtime import jobs
from stacks.runtime.executors import TaskResult
from stacks.runtime.jobs import run_task
from stacks.runtime.liveness import reap_lost_tasks
from stacks.services import handle_event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

MACHINE = """
version: 1
events: [LAUNCH, DESTROY, AGAIN]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [job, approve]
    on:
      NEXT: [{action: advance, state: RUN}]
      AGAIN: [{action: advance, state: WORK}]
  RUN:
    on:
      DESTROY: [{action: advance, state: DONE}]
      AGAIN: [{action: advance, state: WORK}]
  DONE: {terminal: true}
tasks:
  job: %s
  approve: {executor: external}
"""
PRINTS = '{executor: shell, config: {command: ["python3", "-c", "for i in range(%d): print(\'line\', i)"]}}'


def send(stack_id, event, source="api", actor="tester", **extra):
    return handle_event({"stackId": stack_id, "event": event, **extra}, actor=actor, source=source)


def launch(job_yaml: str, stack_id: str = "s1") -> Task:
    save_machine("m", MACHINE % job_yaml, actor="t")
    assert send(stack_id, "LAUNCH", machine="m").ok
    return Stack.objects.get(key=stack_id, removed_at__isnull=True).current_tasks().get(name="job")


@pytest.fixture
def viewer(make_user):
    user = make_user("api-viewer", "viewer")
    _, raw = issue_token(None, user, name="tests", role="viewer")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_it_keeps_a_jobs_attempt_and_output_after_the_state_is_left():
    task = launch(PRINTS % 3)
    assert run_task(task.id) == "applied"
    send("s1", "TASK_COMPLETED", task={"name": "approve"}, actor="alice", source="ui")
    stack = Stack.objects.get(key="s1")
    assert stack.state == "RUN"
    job, approve = TaskAttempt.objects.filter(stack=stack).order_by("id")
    assert (job.task_name, job.state, job.outcome, job.number, job.executor) == ("job", "WORK", "succeeded", 1, "shell")
    assert job.output == "line 0\nline 1\nline 2" and job.line_count == 3
    assert job.started_at and job.finished_at and job.queued_at and job.duration_seconds is not None
    assert (approve.task_name, approve.outcome, approve.actor, approve.executor) == ("approve", "succeeded", "alice",
                                                                                        "external")


def test_it_keeps_each_retry_inside_one_job_as_its_own_attempt():
    task = launch("{executor: sleep, retries: 2, config: {seconds: 0, fail: 1}}")
    run_task(task.id)
    runs = list(TaskAttempt.objects.filter(task=task).order_by("id"))
    assert [(a.number, a.outcome) for a in runs] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all("failed on purpose" in a.error for a in runs)
    assert "--- retry 1 of 2" in runs[1].output and "--- retry" not in runs[0].output


def test_it_keeps_attempts_across_a_retry_and_the_stacks_removal_and_id_reuse(client, viewer):
    task = launch("{executor: sleep, config: {seconds: 0, fail: 1}}")
    run_task(task.id)
    assert send("s1", "RETRY_FAILED_TASKS").ok
    again = Stack.objects.get(key="s1").current_tasks().get(name="job")
    assert again.id != task.id
    run_task(again.id)
    send("s1", "TASK_COMPLETED", task={"name": "job"}, source="ui")  # a person overrides: no attempt of its own
    send("s1", "TASK_COMPLETED", task={"name": "approve"})
    send("s1", "DESTROY")
    old = Stack.objects.get(key="s1")
    assert old.removed and TaskAttempt.objects.filter(stack=old).count() == 3
    launch(PRINTS % 2)  # the same id again, a new record
    body = client.get("/api/stacks/s1/tasks", **viewer).json()
    assert body["count"] == 0 and body["record"] != old.pk
    removed = client.get(f"/api/stacks/removed/{old.pk}/tasks", **viewer).json()
    assert [(a["name"], a["number"], a["outcome"]) for a in sorted(removed["results"], key=lambda a: a["id"])] == [
        ("job", 1, "failed"), ("job", 2, "failed"), ("approve", 1, "succeeded")]
    assert Task.objects.filter(pk=task.id, current=False).exists()


def test_it_bounds_an_attempts_output_keeping_the_last_lines(settings, client, viewer):
    settings.CLOUDSEAM_ATTEMPT_OUTPUT_MAX_BYTES = 100
    task = launch(PRINTS % 50)
    run_task(task.id)
    attempt = TaskAttempt.objects.get(task=task)
    assert attempt.line_count == 50 and attempt.dropped_lines > 30
    assert len(attempt.output.encode()) <= 100 and attempt.output.endswith("line 49")
    response = client.get(f"/api/tasks/{attempt.pk}/output", **viewer)
    assert response["Content-Type"].startswith("text/plain") and response["X-Next-Line"] == "50"
    text = response.content.decode()
    assert text.startswith(f"… {attempt.dropped_lines} earlier lines dropped\n") and text.endswith("line 49\n")
    tail = client.get(f"/api/tasks/{attempt.pk}/output?since=48", **viewer)
    assert tail.content.decode() == "line 48\nline 49\n" and tail["X-Next-Line"] == "50"
    assert client.get(f"/api/tasks/{attempt.pk}/output?since=50", **viewer).content == b""


def test_it_sends_the_stale_output_of_a_replaced_instance_to_its_own_attempt():
    task = launch(PRINTS % 1)
    claimed = jobs._claim(task.id)
    old_output = jobs._Output(claimed)
    old_output.start_attempt(claimed.attempts)
    old_output.add(["before the retry"])
    send("s1", "TASK_ERROR", task={"id": task.id}, description="operator gave up", source="ui")
    send("s1", "RETRY_FAILED_TASKS")
    again = Stack.objects.get(key="s1").current_tasks().get(name="job")
    run_task(again.id)
    old_output.add(["late line from the old job"])
    old_output.flush()
    old_attempt = TaskAttempt.objects.get(task_id=task.id)
    new_attempt = TaskAttempt.objects.get(task_id=again.id)
    assert old_attempt.output == "before the retry\nlate line from the old job"
    assert (old_attempt.outcome, old_attempt.error) == ("failed", "operator gave up")
    assert new_attempt.output == "line 0" and new_attempt.outcome == "succeeded"


def test_it_records_an_external_failure_and_a_lost_worker():
    launch(PRINTS % 1)
    send("s1", "TASK_ERROR", task={"name": "approve"}, description="not today", actor="bob", source="ui")
    failed = TaskAttempt.objects.get(task_name="approve")
    assert (failed.outcome, failed.error, failed.actor) == ("failed", "not today", "bob")
    task = Stack.objects.get(key="s1").current_tasks().get(name="job")
    claimed = jobs._claim(task.id)
    jobs._Output(claimed).start_attempt(claimed.attempts)
    Task.objects.filter(pk=task.id).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert reap_lost_tasks() == 1
    assert TaskAttempt.objects.get(task_id=task.id).outcome == "lost"


def test_it_retries_one_failed_task_only_and_records_it():
    task = launch("{executor: sleep, config: {seconds: 0, fail: 1}}")
    run_task(task.id)
    send("s1", "TASK_ERROR", task={"name": "approve"}, description="no")
    result = send("s1", "RETRY_TASK", task={"name": "approve"}, source="ui")
    assert result.status == 200
    statuses = {t["name"]: t["status"] for t in result.body["tasks"]}
    assert statuses == {"job": "ERROR", "approve": "PENDING"}
    assert StackEvent.objects.filter(event="RETRY_TASK", outcome="applied", task_ref="approve").exists()
    refused = send("s1", "RETRY_TASK", task={"name": "approve"})
    assert refused.status == 409 and "not failed" in refused.body["error"]
    missing = send("s1", "RETRY_TASK")
    assert missing.status == 400 and "needs task" in missing.body["error"]
    unknown = send("s1", "RETRY_TASK", task={"name": "ghost"})
    assert unknown.status == 409 and "no task named ghost" in unknown.body["error"]


def test_it_lists_filters_and_refuses_in_the_api(client, viewer):
    task = launch("{executor: sleep, retries: 1, config: {seconds: 0, fail: 1}}")
    run_task(task.id)
    url = "/api/stacks/s1/tasks"
    assert client.get(url).status_code == 401
    page = client.get(f"{url}?pageSize=1", **viewer).json()
    assert (page["count"], page["pages"], len(page["results"])) == (2, 2, 1)
    assert page["results"][0]["number"] == 2  # newest first
    assert client.get(f"{url}?outcome=failed&name=job&state=WORK", **viewer).json()["count"] == 2
    assert client.get(f"{url}?state=RUN", **viewer).json()["count"] == 0
    bad = client.get(f"{url}?outcome=exploded", **viewer)
    assert bad.status_code == 400 and "outcome must be one of" in bad.json()["error"]
    assert client.get(f"{url}?page=9", **viewer).status_code == 404
    assert client.get("/api/stacks/nope/tasks", **viewer).status_code == 404
    assert client.get("/api/stacks/removed/999/tasks", **viewer).status_code == 404
    one = page["results"][0]
    detail = client.get(f"/api/tasks/{one['id']}", **viewer).json()
    assert detail["name"] == "job" and detail["outcome"] == "failed" and detail["stack"] == "s1"
    missing = client.get("/api/tasks/123456", **viewer)
    assert missing.status_code == 404 and "no task attempt 123456" in missing.json()["error"]
    since = client.get(f"/api/tasks/{one['id']}/output?since=-1", **viewer)
    assert since.status_code == 400 and "since must be a line number" in since.json()["error"]
    assert client.post(f"/api/tasks/{one['id']}", **viewer).status_code == 405
    huge = "9" * 40
    for url in (f"/api/tasks/{huge}", f"/api/tasks/{huge}/output", f"/api/stacks/removed/{huge}/tasks"):
        assert client.get(url, **viewer).status_code == 404, url
    assert client.get(f"{url}?state=A%00B", **viewer).status_code == 400
    far = client.get(f"/api/tasks/{one['id']}/output?since={huge}", **viewer)
    assert far.status_code == 200 and far.content == b""
    snapshot = client.get("/api/stacks/s1", **viewer).json()
    assert {t["name"]: t["phase"] for t in snapshot["tasks"]} == {"job": "failed", "approve": "waiting"}


def test_it_prunes_attempts_past_the_retention(capsys):
    task = launch(PRINTS % 1)
    run_task(task.id)
    TaskAttempt.objects.update(finished_at=timezone.now() - timedelta(days=100))
    call_command("prune_attempts", "--days", "200")
    assert TaskAttempt.objects.count() == 1
    call_command("prune_attempts")
    assert TaskAttempt.objects.count() == 0 and "deleted 1 attempt" in capsys.readouterr().out
    assert attempts.prune(0) == 0


def test_it_cancels_the_attempt_of_a_task_left_behind_whose_job_went_away():
    task = launch(PRINTS % 1)
    claimed = jobs._claim(task.id)
    jobs._Output(claimed).start_attempt(claimed.attempts)
    send("s1", "AGAIN")  # WORK again: the running instance is replaced while its job runs
    assert attempts.close_abandoned() == 0  # its job still beats
    Task.objects.filter(pk=task.id).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    TaskAttempt.objects.update(started_at=timezone.now() - timedelta(minutes=10))
    assert attempts.close_abandoned() == 1
    attempt = TaskAttempt.objects.get(task_id=task.id)
    assert attempt.outcome == "cancelled" and "never reported" in attempt.error and attempt.finished_at


def test_it_cuts_a_single_line_longer_than_the_bound_by_bytes():
    buffer = attempts.OutputBuffer(max_bytes=10)
    buffer.add(["ééééééééééé", "ok"])  # 22 bytes of UTF-8, then a short line
    assert len(buffer.fields()["output"].encode()) <= 10 and buffer.fields()["output"].endswith("ok")
    assert buffer.fields()["line_count"] == 2


def test_it_saves_an_attempts_output_with_its_end_and_not_again(django_assert_num_queries):
    task = launch(PRINTS % 2)
    claimed = jobs._claim(task.id)
    output = jobs._Output(claimed)
    output.start_attempt(claimed.attempts)
    output.add(["line 0", "line 1"])
    with django_assert_num_queries(1):  # the attempt's end, with its output
        output.finish_attempt(TaskResult(ok=True))
    with django_assert_num_queries(1):  # only the task row: the attempt has all its lines already
        output.flush(finished_at=timezone.now())
    attempt = TaskAttempt.objects.get(task_id=task.id)
    assert (attempt.output, attempt.outcome) == ("line 0\nline 1", "succeeded")


def test_it_still_saves_the_output_of_an_attempt_closed_as_lost_while_it_ran():
    task = launch(PRINTS % 1)
    claimed = jobs._claim(task.id)
    output = jobs._Output(claimed)
    output.start_attempt(claimed.attempts)
    output.add(["still working"])
    Task.objects.filter(pk=task.id).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert reap_lost_tasks() == 1
    output.finish_attempt(TaskResult(ok=True))
    output.flush()
    attempt = TaskAttempt.objects.get(task_id=task.id)
    assert (attempt.outcome, attempt.output) == ("lost", "still working")
