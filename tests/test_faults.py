"""Faults: workers that die, reports that repeat, tasks that hang, live frames that go missing.

End-to-end versions (a real `serve`, `kill -9` of a worker, 200 WebSockets) are in test_e2e_faults.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from machines_app.services import save_machine
from stacks.models import Stack, StackEvent, Task
from stacks.runtime.liveness import reap_lost_tasks, requeue_lost_jobs
from stacks.services import handle_event, send

ROOT = Path(__file__).resolve().parent.parent

MACHINE = """
version: 1
events: [LAUNCH, AWAY, BACK]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [job]
    on:
      NEXT: [{action: advance, state: DONE}]
      AWAY: [{action: advance, state: ELSEWHERE}]
  ELSEWHERE:
    on:
      BACK: [{action: advance, state: WORK}]
  DONE: {terminal: true}
tasks:
  job: %s
"""


def launch(task_yaml: str, stack_id: str = "s1") -> Task:
    save_machine("m", MACHINE % task_yaml, actor="t")
    handle_event({"stackId": stack_id, "event": "LAUNCH", "machine": "m"}, actor="t", source="api")
    return Stack.objects.get(key=stack_id).current_tasks().get()


# --- item 5: a lost task is reported once; a repeated error report is ignored ----------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_ignores_a_repeated_error_report_for_a_failed_task():
    task = launch("{executor: sleep}")
    first = send("s1", "TASK_ERROR", task={"id": task.id}, description="first", actor="w1", source="worker")
    again = send("s1", "TASK_ERROR", task={"id": task.id}, description="second", actor="w2", source="worker")

    assert (first.outcome, again.outcome) == ("applied", "ignored")
    task.refresh_from_db()
    assert task.status == "ERROR" and task.error_message == "first"
    entry = StackEvent.objects.filter(stack_key="s1", actor="w2").get()
    assert entry.outcome == "ignored" and "has already failed" in entry.error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_reports_a_lost_task_once_when_several_workers_check_at_once(settings):
    settings.CLOUDSEAM_TASK_LOST_AFTER = 30
    task = launch("{executor: sleep}", "lost")
    Task.objects.filter(pk=task.pk).update(started_at=timezone.now(),
                                           heartbeat_at=timezone.now() - timedelta(seconds=60))
    start = threading.Barrier(4)
    failed: list[int] = []

    def check() -> None:
        from django.db import connection

        try:
            start.wait()
            failed.append(reap_lost_tasks())
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(failed) == [0, 0, 0, 1]
    reports = StackEvent.objects.filter(stack_key="lost", event="TASK_ERROR")
    assert [r.outcome for r in reports] == ["applied"]
    assert Task.objects.get(pk=task.pk).status == "ERROR"


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_takes_over_a_lost_task_only_with_the_heartbeat_it_saw(settings):
    from stacks.runtime.liveness import _take_over

    settings.CLOUDSEAM_TASK_LOST_AFTER = 30
    task = launch("{executor: sleep}", "cas")
    seen = timezone.now() - timedelta(seconds=60)
    Task.objects.filter(pk=task.pk).update(heartbeat_at=seen)

    assert _take_over(task.id, seen, 30) is True
    assert _take_over(task.id, seen, 30) is False  # somebody else's check already moved it
    assert Task.objects.get(pk=task.pk).heartbeat_at == seen - timedelta(seconds=30)


def _worker_env() -> dict:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "cloudseam_site.settings", "PYTHONPATH": str(ROOT)}


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_fails_within_lost_after_a_task_whose_worker_died_before_claiming_it(settings):
    import django_rq
    from rq.job import Job

    settings.CLOUDSEAM_TASK_LOST_AFTER = 2
    queue = django_rq.get_queue("default")
    queue.empty()
    task = launch("{executor: sleep}", "abandoned")
    queue.empty()  # the real job; this test's job takes its place under the same id
    queue.enqueue("tests.executor_targets.kill_the_worker", task.id, job_id=f"task-{task.id}")
    # A real worker process takes the job and dies (SIGKILL) before the task is claimed.
    worker = subprocess.run(
        [sys.executable, "-m", "django", "rqworker", "default", "--burst",
         "--worker-class", "stacks.runtime.worker.CloudSeamWorker"],
        cwd=ROOT, env=_worker_env(), capture_output=True, timeout=60,
    )
    assert worker.returncode == -9
    assert Job.fetch(f"task-{task.id}", connection=queue.connection).get_status() == "started"
    died = time.monotonic()

    requeue_lost_jobs()  # too early: the worker might only be slow
    assert Task.objects.get(pk=task.pk).status == "PENDING"
    while Task.objects.get(pk=task.pk).status == "PENDING" and time.monotonic() - died < 10:
        time.sleep(0.5)
        requeue_lost_jobs()
        reap_lost_tasks()

    task.refresh_from_db()
    assert task.status == "ERROR" and time.monotonic() - died < 2 + 3
    assert "stopped before starting the task" in task.error_message and "Retry the task" in task.error_message
    assert StackEvent.objects.filter(stack_key="abandoned", event="TASK_ERROR").count() == 1
    requeue_lost_jobs()
    reap_lost_tasks()
    assert StackEvent.objects.filter(stack_key="abandoned", event="TASK_ERROR").count() == 1
