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
    # Just inside the lost window: a check listing the task a moment later leaves it to the winner.
    claimed = Task.objects.get(pk=task.pk).heartbeat_at
    assert timezone.now() - timedelta(seconds=30) < claimed <= timezone.now()
    assert reap_lost_tasks() == 0


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


# --- item 6: default timeouts, and a deadline for tasks that wait ------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_gives_a_task_without_a_timeout_its_executors_default(settings):
    from stacks.runtime.queueing import JOB_MARGIN, job_for, task_timeout

    settings.CLOUDSEAM_DEFAULT_TIMEOUT_SHELL = 3600
    settings.CLOUDSEAM_DEFAULT_TIMEOUT_HTTP = 300
    task = launch('{executor: shell, config: {command: ["true"]}}')
    tasks = task.stack.machine_version.spec.tasks
    assert task_timeout(tasks["job"]) == 3600
    assert job_for(task, tasks["job"]).job_timeout == 3600 + JOB_MARGIN

    settings.CLOUDSEAM_DEFAULT_TIMEOUT_SHELL = 0  # 0: no limit, as before
    assert task_timeout(tasks["job"]) is None and job_for(task, tasks["job"]).job_timeout == -1


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_stops_a_hung_shell_task_at_the_default_timeout_and_says_so(settings):
    from stacks.runtime.jobs import run_task

    settings.CLOUDSEAM_DEFAULT_TIMEOUT_SHELL = 1
    task = launch('{executor: shell, config: {command: ["sleep", "30"]}}', "hung")
    started = time.monotonic()

    assert run_task(task.id) == "applied"

    task.refresh_from_db()
    assert time.monotonic() - started < 10
    assert task.status == "ERROR"
    assert task.error_message == (
        "timed out after 1 s (the default for shell tasks, CLOUDSEAM_DEFAULT_TIMEOUT_SHELL; give the task a "
        "`timeout` in its machine to allow longer)"
    )


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_shows_an_external_task_waiting_past_the_deadline_as_overdue(settings, client, django_user_model):
    from stacks.runtime.liveness import fail_expired_waits
    from stacks.snapshots import stack_json

    settings.CLOUDSEAM_EXTERNAL_DEADLINE = 3600
    task = launch("{executor: external}", "approval")
    assert stack_json(Stack.objects.get(key="approval"))["tasks"][0]["overdue"] is False

    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=3601))

    assert fail_expired_waits() == 0  # no timeout of its own: shown, not failed
    snapshot = stack_json(Stack.objects.get(key="approval"))
    assert snapshot["tasks"][0]["overdue"] is True and snapshot["tasks"][0]["status"] == "PENDING"
    admin = django_user_model.objects.create_superuser("boss", "", "pw")
    client.force_login(admin)
    page = client.get("/stacks/approval/").content.decode()
    assert 'class="task-overdue" title=' in page  # shown, not hidden


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_fails_a_waiting_task_whose_own_timeout_passed_once(settings):
    from stacks.runtime.liveness import fail_expired_waits

    task = launch("{executor: external, timeout: 60}", "gate")
    assert fail_expired_waits() == 0
    Task.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=61))

    assert fail_expired_waits() == 1
    assert fail_expired_waits() == 0
    task.refresh_from_db()
    assert task.status == "ERROR"
    assert task.error_message.startswith("no approval arrived within the task's timeout of 60 s")
    assert StackEvent.objects.filter(stack_key="gate", event="TASK_ERROR").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_fails_an_http_callback_that_never_came_after_its_timeout(settings):
    from stacks.runtime.liveness import fail_expired_waits

    task = launch("{executor: http, timeout: 30, config: {url: 'http://127.0.0.1:9/x', mode: callback}}", "cb")
    # What run_task leaves behind after a 2xx in callback mode: started, waiting, no heartbeat.
    Task.objects.filter(pk=task.pk).update(started_at=timezone.now() - timedelta(seconds=31), heartbeat_at=None)
    assert Task.objects.get(pk=task.pk).waiting

    assert fail_expired_waits() == 1
    task.refresh_from_db()
    assert task.status == "ERROR" and task.error_message.startswith("no callback arrived within")


# --- item 2: a task's process tree dies with its worker; never two live runs of one task -------------

TRAPS_SIGTERM_WITH_GRANDCHILD = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)  # leaves the process group
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1], "w") as f:
    f.write(f"{os.getpid()} {escaped.pid} {child.pid}")
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""

FAKE_WORKER = """
import sys
from stacks.runtime.executors.process import run_process
run_process([sys.executable, "-c", sys.argv[1], sys.argv[2]], timeout=300)
"""


def _wait_for_file(path: Path, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _all_dead(pids: list[int], timeout: float = 5) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_it_kills_the_whole_task_tree_when_its_worker_is_killed(tmp_path):
    import signal

    pids_file = tmp_path / "pids"
    worker = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, TRAPS_SIGTERM_WITH_GRANDCHILD, str(pids_file)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    pids = [int(p) for p in _wait_for_file(pids_file).split()]
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)

    assert _all_dead(pids), "a process of the task outlived its worker"


def test_it_stops_a_run_whose_lease_is_not_renewed(tmp_path):
    from stacks.runtime.executors.guard import Lease
    from stacks.runtime.executors.process import run_process

    pids_file = tmp_path / "pids"
    started = time.monotonic()
    outcome = run_process([sys.executable, "-c", TRAPS_SIGTERM_WITH_GRANDCHILD, str(pids_file)], timeout=60,
                          lease=Lease(2.0))

    assert 1.5 < time.monotonic() - started < 10
    assert outcome.returncode == -9 and not outcome.timed_out
    assert "[cloudseam] the worker stopped renewing this task's lease; stopping the task" in outcome.tail
    assert _all_dead([int(p) for p in pids_file.read_text().split()])


def test_it_stops_a_run_at_once_when_its_lease_is_revoked(tmp_path):
    from stacks.runtime.executors.guard import Lease
    from stacks.runtime.executors.process import run_process

    lease = Lease(30.0)
    threading.Timer(1.0, lease.revoke).start()
    started = time.monotonic()
    outcome = run_process([sys.executable, "-c", TRAPS_SIGTERM_WITH_GRANDCHILD, str(tmp_path / "pids")],
                          timeout=60, lease=lease)

    assert time.monotonic() - started < 6 and outcome.returncode == -9


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_revokes_the_lease_when_the_task_was_failed_as_lost_meanwhile():
    from stacks.runtime.executors.guard import Lease
    from stacks.runtime.jobs import _Heartbeat

    task = launch("{executor: sleep}", "revoked")
    lease = Lease(30.0)
    Task.objects.filter(pk=task.pk).update(status="ERROR")
    with _Heartbeat(task.id, interval=0.05, lease=lease):
        deadline = time.monotonic() + 5
        while not lease.revoked and time.monotonic() < deadline:
            time.sleep(0.05)
    assert lease.revoked


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_does_not_start_a_task_while_an_earlier_run_of_it_is_alive(settings, monkeypatch):
    from stacks.runtime import jobs

    settings.CLOUDSEAM_TASK_LOST_AFTER = 30
    first = launch("{executor: sleep}", "twice")
    Task.objects.filter(pk=first.pk).update(started_at=timezone.now(), heartbeat_at=timezone.now())
    send("twice", "AWAY", actor="t", source="api")
    send("twice", "BACK", actor="t", source="api")
    second = Stack.objects.get(key="twice").current_tasks().get()
    assert second.pk != first.pk
    assert jobs._previous_run_alive(second.id) is True

    # The first run ends (or its heartbeat goes stale): the second one may start.
    Task.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    assert jobs._previous_run_alive(second.id) is False
    monkeypatch.setattr(jobs, "WAIT_POLL_SECONDS", 0.01)
    assert jobs.run_task(second.id) == "applied"


# --- item 10: numbered live frames, re-sync on a gap, no members left behind -------------------------

WS_ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def _watcher_headers(client, make_user) -> list[tuple[bytes, bytes]]:
    client.force_login(make_user("watcher", "viewer"))
    return [*WS_ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def in_order(seqs: dict, message: dict) -> tuple[bool, bool]:
    """The client's rule (static/js/live.js LiveSocket.inOrder): (apply it?, ask for a snapshot?)."""
    if message["type"] == "snapshot":
        seqs.clear()
        seqs.update({s["id"]: s["seq"] for s in message.get("stacks") or [message["stack"]]})
        return True, False
    stack = message["stack"]
    last = seqs.get(stack["id"])
    if last is not None and stack["seq"] <= last:
        return False, False
    seqs[stack["id"]] = stack["seq"]
    return True, last is not None and stack["seq"] > last + 1


@pytest.mark.django_db(transaction=True)
def test_it_numbers_live_frames_and_sends_a_fresh_snapshot_when_a_client_saw_a_gap(client, make_user):
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.db.models import F

    from cloudseam_site.asgi import application

    launch("{executor: external}", "live")
    headers = _watcher_headers(client, make_user)

    def change(value: str) -> None:
        send("live", "UPDATE_METADATA", metadata={"v": value}, actor="t", source="api")

    def lose_a_frame() -> None:  # a change whose frame never arrives
        Stack.objects.filter(key="live").update(seq=F("seq") + 1)

    async def scenario() -> list:
        seqs: dict = {}
        communicator = WebsocketCommunicator(application, "/ws/stacks/live/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        snapshot = await communicator.receive_json_from(timeout=5)
        seen = [(snapshot["type"], snapshot["stack"]["seq"], in_order(seqs, snapshot))]
        await sync_to_async(change)("a")
        await sync_to_async(change)("b")
        await sync_to_async(lose_a_frame)()
        await sync_to_async(change)("c")
        for _ in range(3):
            frame = await communicator.receive_json_from(timeout=5)
            apply, resync = in_order(seqs, frame)
            seen.append((frame["type"], frame["stack"]["seq"], (apply, resync)))
            if resync:
                await communicator.send_json_to({"type": "resync"})
        again = await communicator.receive_json_from(timeout=5)
        seen.append((again["type"], again["stack"]["seq"], in_order(seqs, again)))
        await communicator.disconnect()
        return seen

    seen = async_to_sync(scenario)()

    assert seen == [
        ("snapshot", 1, (True, False)),
        ("stack.updated", 2, (True, False)),
        ("stack.updated", 3, (True, False)),
        ("stack.updated", 5, (True, True)),  # 4 never came: the client asks for the whole picture
        ("snapshot", 5, (True, False)),
    ]


@pytest.mark.django_db(transaction=True)
def test_it_leaves_no_group_member_behind_when_many_watchers_disconnect_at_once(client, make_user):
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    from cloudseam_site.asgi import application

    headers = _watcher_headers(client, make_user)
    layer = get_channel_layer()
    group_key = layer._group_key("stacks")
    watchers = 200

    async def scenario() -> tuple[int, int]:
        communicators = [WebsocketCommunicator(application, "/ws/stacks/", headers=headers) for _ in range(watchers)]
        for communicator in communicators:
            connected, _ = await communicator.connect(timeout=10)
            assert connected
            await communicator.receive_json_from(timeout=10)
        connection = layer.connection(layer.consistent_hash("stacks"))
        members = await connection.zcard(group_key)
        await asyncio.gather(*(c.disconnect() for c in communicators))
        return members, await connection.zcard(group_key)

    before, after = async_to_sync(scenario)()

    assert (before, after) == (watchers, 0)
