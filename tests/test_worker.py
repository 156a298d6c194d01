"""The worker class and the queue client: what each job costs in Redis round trips."""

from __future__ import annotations

import redis
import redis.connection
from django.conf import settings
from rq import Queue

from stacks.runtime import queueing
from stacks.runtime.worker import CloudSeamWorker


def count_round_trips(monkeypatch) -> list[int]:
    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(1)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def test_it_beats_in_one_round_trip(monkeypatch):
    client = redis.Redis.from_url(settings.REDIS_URL)
    worker = CloudSeamWorker([Queue("default", connection=client)], connection=client, name="one-trip")
    worker.register_birth()
    try:
        client.ping()
        sent = count_round_trips(monkeypatch)
        worker.heartbeat()
        assert len(sent) == 1
        assert client.hget(worker.key, "last_heartbeat") and client.ttl(worker.key) > 60
        with client.pipeline() as pipe:  # RQ's own pipelined beats still go into RQ's pipeline
            worker.heartbeat(90, pipeline=pipe)
            pipe.execute()
        assert 0 < client.ttl(worker.key) <= 90
    finally:
        worker.register_death()


def test_it_keeps_one_redis_client_per_process_for_the_queue(settings):
    first = queueing.get_queue()
    assert queueing.get_queue().connection is first.connection  # no new connection per enqueue
    settings.RQ_QUEUES = {"default": {**settings.RQ_QUEUES["default"], "DEFAULT_TIMEOUT": 7}}
    assert queueing.get_queue().connection is not first.connection  # another configuration, another client
