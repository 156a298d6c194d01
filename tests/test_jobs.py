"""The RQ job body and the liveness check, called directly (the e2e tests run them in workers)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from machines_app.services import save_machine
from stacks.models import Stack, StackEvent, Task
from stacks.runtime.jobs import run_task
from stacks.runtime.liveness import reap_lost_tasks, requeue_lost_jobs
from stacks.services import handle_event

pytestmark = pytest.mark.postgres  # also run on PostgreSQL by `make test`

MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [job]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE: {terminal: true}
tasks:
  job: %s
"""


def launch(task_yaml: str, stack_id: str = "s1") -> Task:
    save_machine("m", MACHINE % task_yaml, actor="t")
    handle_event({"stackId": stack_id, "event": "LAUNCH", "machine": "m"}, actor="t", source="api")
    return Stack.objects.get(key=stack_id).current_tasks().get()


@pytest.mark.django_db
def test_it_runs_a_task_and_completes_it_through_handle_event():
    task = launch('{executor: shell, config: {command: ["python3", "-c", "print(\'hello\'); print(\'bye\')"]}}')
    assert run_task(task.id) == "applied"
    task.refresh_from_db()
    assert task.status == "SATISFIED" and task.attempts == 1 and task.output_tail == "hello\nbye"
    assert task.started_at and task.finished_at and task.heartbeat_at is None
    assert Stack.objects.get(key="s1").state == "DONE"
    assert StackEvent.objects.filter(event="TASK_COMPLETED", source="worker", actor="worker").exists()


@pytest.mark.django_db
def test_it_retries_before_reporting_an_error():
    task = launch("{executor: sleep, retries: 2, config: {seconds: 0, fail: 1}}")
    assert run_task(task.id) == "applied"
    task.refresh_from_db()
    assert task.status == "ERROR" and task.attempts == 3
    assert "failed on purpose" in task.error_message
    assert task.output_tail.count("--- retry") == 2


@pytest.mark.django_db
def test_it_does_nothing_for_a_stale_task():
    task = launch("{executor: sleep, config: {seconds: 0, fail: 1}}")
    handle_event({"stackId": "s1", "event": "TASK_ERROR", "task": {"id": task.id}, "description": "x"},
                 actor="t", source="api")
    handle_event({"stackId": "s1", "event": "RETRY_FAILED_TASKS"}, actor="t", source="api")
    assert run_task(task.id) == "stale"
    assert Task.objects.get(pk=task.id).attempts == 0


@pytest.mark.django_db
def test_it_fails_a_task_with_a_timeout():
    task = launch('{executor: shell, timeout: 1, config: {command: ["sleep", "30"]}}')
    run_task(task.id)
    task.refresh_from_db()
    assert task.status == "ERROR" and "timed out after 1" in task.error_message


@pytest.mark.django_db
def test_it_leaves_external_tasks_waiting():
    task = launch("{executor: external}")
    assert run_task(task.id) == "waiting"
    task.refresh_from_db()
    assert task.status == "PENDING" and task.heartbeat_at is None


@pytest.mark.django_db
def test_it_fails_tasks_whose_heartbeat_stopped_and_only_those(settings):
    settings.CLOUDSEAM_TASK_LOST_AFTER = 30
    lost = launch("{executor: sleep}", "lost")
    alive = launch("{executor: sleep}", "alive")
    never_started = launch("{executor: sleep}", "queued")
    now = timezone.now()
    Task.objects.filter(pk=lost.pk).update(heartbeat_at=now - timedelta(seconds=31))
    Task.objects.filter(pk=alive.pk).update(heartbeat_at=now - timedelta(seconds=5))
    assert reap_lost_tasks() == 1
    lost.refresh_from_db()
    assert lost.status == "ERROR" and "stopped responding (no heartbeat for 30 s)" in lost.error_message
    assert Task.objects.get(pk=alive.pk).status == "PENDING"
    assert Task.objects.get(pk=never_started.pk).status == "PENDING"
    assert reap_lost_tasks() == 0
    assert StackEvent.objects.filter(stack_key="lost", event="TASK_ERROR", actor="liveness-check").count() == 1


@pytest.mark.django_db
def test_it_enqueues_again_a_task_whose_job_redis_lost():
    import django_rq

    queue = django_rq.get_queue("default")
    queue.empty()
    task = launch("{executor: sleep}", "lost-job")
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    assert requeue_lost_jobs() == 1
    assert queue.job_ids == [f"task-{task.id}"]
    assert requeue_lost_jobs() == 0  # the job exists now
    assert Task.objects.get(pk=task.pk).status == "PENDING"


@pytest.mark.django_db
def test_it_runs_a_task_once_when_its_job_is_delivered_twice():
    task = launch("{executor: external}")
    assert run_task(task.id) == "waiting"
    assert run_task(task.id) == "stale"
    assert Task.objects.get(pk=task.id).attempts == 1


def test_it_keeps_beating_after_a_database_error():
    from stacks.runtime.jobs import _Heartbeat

    beats = []

    def flaky_beat(task_id: str) -> None:
        beats.append(task_id)
        if len(beats) == 1:
            raise RuntimeError("database went away for a moment")

    with _Heartbeat("t1", interval=0.01, beat=flaky_beat):
        deadline = time.monotonic() + 5
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(beats) >= 3


@pytest.mark.django_db
def test_it_fails_a_task_whose_job_failed_before_starting_it():
    import django_rq
    from rq import SimpleWorker

    queue = django_rq.get_queue("default")
    queue.empty()
    task = launch("{executor: sleep}", "doomed-job")
    # A real job with the task's id that fails in a real worker before it can claim the task.
    queue.enqueue("tests.executor_targets.no_such_function", job_id=f"task-{task.id}")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    assert requeue_lost_jobs() == 0
    task.refresh_from_db()
    assert task.status == "ERROR"
    assert "ended before the task started" in task.error_message and "no_such_function" in task.error_message


@pytest.mark.django_db
def test_it_still_runs_a_job_queued_under_the_old_job_path():
    """A job enqueued as `stacks.jobs.run_task` before an upgrade runs through the shim."""
    import django_rq
    from rq import SimpleWorker

    task = launch('{executor: shell, config: {command: ["python3", "-c", "print(42)"]}}', stack_id="old-path")
    queue = django_rq.get_queue("default")
    queue.empty()
    queue.enqueue("stacks.jobs.run_task", task.id, job_id=f"old-{task.id}")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    task.refresh_from_db()
    assert task.status == "SATISFIED" and task.output_tail == "42"
    assert queue.fetch_job(f"old-{task.id}").func_name == "stacks.jobs.run_task"


@pytest.mark.django_db
def test_it_claims_a_task_once():
    from stacks.runtime import jobs

    task = launch("{executor: sleep}")
    claimed = jobs._claim(task.id)
    assert claimed.pk == task.id and claimed.attempts == 1 and claimed.started_at and claimed.heartbeat_at
    assert claimed.stack.key == "s1" and claimed.stack.machine.name == "m"
    assert jobs._claim(task.id) is None
    assert Task.objects.get(pk=task.id).attempts == 1


@pytest.mark.django_db
def test_it_does_not_claim_a_task_of_a_removed_stack():
    from stacks.runtime import jobs

    task = launch("{executor: sleep}")
    Stack.objects.filter(key="s1").update(removed_at=timezone.now())
    assert jobs._claim(task.id) is None
    assert run_task(task.id) == "stale"
    assert Task.objects.get(pk=task.id).started_at is None


@pytest.mark.django_db
def test_it_hands_the_executor_a_snapshot_read_with_the_claim():
    from stacks.runtime import jobs

    task = launch("{executor: sleep}")
    claimed = jobs._claim_run(task.id)
    assert [t.pk for t in claimed.current] == [task.id]
    assert claimed.current[0].started_at is not None  # read after the claim


@pytest.mark.django_db
def test_it_runs_a_trivial_task_in_few_statements(django_assert_max_num_queries):
    task = launch("{executor: sleep, config: {seconds: 0}}")
    # claim, load, open and close the attempt, save output and finish time; then the report itself.
    with django_assert_max_num_queries(12):  # 16 before the claim took one statement
        assert run_task(task.id) == "applied"


@pytest.mark.django_db
def test_it_streams_a_short_tasks_output_in_one_message(monkeypatch):
    from stacks.runtime import jobs

    sent = []
    monkeypatch.setattr(jobs.live, "publish_output", lambda stack, task, lines: sent.append((stack, task, lines)))
    task = launch("{executor: sleep, config: {seconds: 0}}")
    assert run_task(task.id) == "applied"
    assert sent == [("s1", task.id, ["sleeping for 0 s", "slept 0 s"])]


@pytest.mark.django_db
def test_it_streams_a_running_tasks_output_while_it_runs(monkeypatch):
    from stacks.runtime import jobs

    sent = []
    monkeypatch.setattr(jobs.live, "publish_output", lambda stack, task, lines: sent.append(lines))
    task = launch("{executor: sleep}")
    output = jobs._Output(jobs._claim(task.id))
    with jobs._Heartbeat(task.id, interval=60, tick=output.publish):
        output.add(["one"])
        output.add(["two"])
        deadline = time.monotonic() + 5
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent  # within LIVE_OUTPUT_SECONDS, without waiting for the next save
        output.add(["three"])
    output.flush()
    assert [line for batch in sent for line in batch] == ["one", "two", "three"]


@pytest.mark.django_db
def test_it_gives_a_scratch_folder_only_to_executors_that_use_one(monkeypatch):
    from stacks.runtime import jobs

    seen = {}

    def record(ctx):
        seen[ctx.executor] = ctx.workdir
        return jobs.TaskResult(ok=True)

    monkeypatch.setattr(jobs, "run_executor", record)
    run_task(launch("{executor: sleep}", "plain").id)
    run_task(launch("{executor: python, config: {callable: 'tests.executor_targets:greet'}}", "py").id)
    assert seen["sleep"] is None
    assert seen["python"] and not os.path.exists(seen["python"])  # made for the run, removed after it
