"""The worker class and the queue client: what each job costs in Redis round trips."""

from __future__ import annotations

import uuid

import pytest
import redis
import redis.connection
from django.conf import settings
from rq import Queue

from stacks.runtime import queueing
from stacks.runtime.worker import CloudSeamWorker

MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT: {on: {LAUNCH: [{action: advance, state: WORK}]}}
  WORK:
    tasks: [a, b]
    on: {NEXT: [{action: advance, state: DONE}]}
  DONE: {terminal: true}
tasks:
  a: {executor: sleep, config: {seconds: 0}}
  b: {executor: sleep, config: {seconds: 0}}
"""


def count_round_trips(monkeypatch) -> list[int]:
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(1)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def new_worker() -> CloudSeamWorker:
    client = redis.Redis.from_url(settings.REDIS_URL)
    return CloudSeamWorker([Queue("default", connection=client)], connection=client, name=f"w-{uuid.uuid4().hex}")


@pytest.fixture
def worker():
    worker = new_worker()
    worker.register_birth()
    worker.connection.ping()  # connected: what follows counts only its own round trips
    yield worker
    worker.register_death()


def test_it_beats_in_one_round_trip_at_most_once_a_second(worker, monkeypatch):
    client = worker.connection
    sent = count_round_trips(monkeypatch)
    worker.heartbeat()
    assert len(sent) == 1
    worker.heartbeat()
    worker.heartbeat()
    assert len(sent) == 1  # RQ beats three times between two jobs, within a millisecond
    assert client.hget(worker.key, "last_heartbeat") and client.ttl(worker.key) > 400


def test_it_beats_again_after_a_jobs_own_ttl(worker):
    client = worker.connection
    worker.heartbeat()
    with client.pipeline() as pipe:  # as a job starts, RQ's pipelined beat sets the job's TTL
        worker.heartbeat(90, pipeline=pipe)
        pipe.execute()
    assert 0 < client.ttl(worker.key) <= 90
    worker.heartbeat()  # the job is over: the worker's own TTL again, without waiting a second
    assert client.ttl(worker.key) > 400


def test_it_writes_a_state_once(worker, monkeypatch):
    worker.set_state("idle")
    sent = count_round_trips(monkeypatch)
    worker.set_state("idle")
    assert sent == [] and worker.get_state() == "idle"
    worker.set_state("busy")
    assert len(sent) == 1 and worker.connection.hget(worker.key, "state") == b"busy"


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_runs_task_jobs_end_to_end(django_capture_on_commit_callbacks):
    from machines_app.services import save_machine
    from stacks.models import Stack
    from stacks.services import handle_event

    queue = queueing.get_queue()
    queue.empty()
    save_machine("m", MACHINE, actor="t")
    with django_capture_on_commit_callbacks(execute=True):
        handle_event({"stackId": "w1", "event": "LAUNCH", "machine": "m"}, actor="t", source="api")
    assert queue.count == 2
    worker = new_worker()
    worker.work(burst=True)
    assert Stack.objects.get(key="w1").state == "DONE"
    assert worker.connection.hget(worker.key, "state") == b"idle"


def test_it_keeps_one_redis_client_per_process_for_the_queue(settings):
    first = queueing.get_queue()
    assert queueing.get_queue().connection is first.connection  # no new connection per enqueue
    settings.RQ_QUEUES = {"default": {**settings.RQ_QUEUES["default"], "DEFAULT_TIMEOUT": 7}}
    assert queueing.get_queue().connection is not first.connection  # another configuration, another client
