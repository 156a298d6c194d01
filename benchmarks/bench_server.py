"""P3/P4: the real server (`serve`: Daphne + 2 workers + embedded Redis) on PostgreSQL.

P3: POST /api/events (no-op events) from 8 keep-alive clients, with one web process and with two
(`serve --web 2`, the production answer when one process is the limit). P4: task cycles (4 trivial tasks →
NEXT) on the server's 2 workers, and the latency from an accepted event to NEXT applied. The P4
reference is raw RQ: no-op jobs on 2 workers of the same class (SimpleWorker) on a Redis database
of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
SECONDS = 4.0

MACHINE = """
version: 1
events: [LAUNCH, NOTE, WORK]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      NOTE: [{action: no-op}]
      WORK: [{action: advance, state: BUSY}]
  BUSY:
    tasks: [a, b, c, d]
    on:
      NEXT: [{action: advance, state: RUN}]
  GONE:
    terminal: true
tasks:
  a: {executor: sleep, config: {seconds: 0}}
  b: {executor: sleep, config: {seconds: 0}}
  c: {executor: sleep, config: {seconds: 0}}
  d: {executor: sleep, config: {seconds: 0}}
"""


def noop() -> None:
    """A raw RQ job that does nothing (the P4 reference)."""


class Client:
    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")


def post_rate(server, token: str) -> dict:
    """P3: 8 keep-alive clients post no-op events to their own stacks for SECONDS."""
    for i in range(CLIENTS):
        status, body = Client(server.port, token).call("POST", "/api/events",
                                                       {"stackId": f"p3-{i}", "event": "LAUNCH", "machine": "bench"})
        assert status == 200, body
    counts, errors = [0] * CLIENTS, []
    stop = time.perf_counter() + SECONDS

    def run(index: int) -> None:
        client = Client(server.port, token)
        while time.perf_counter() < stop:
            status, body = client.call("POST", "/api/events", {"stackId": f"p3-{index}", "event": "NOTE"})
            if status == 200:
                counts[index] += 1
            else:
                errors.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rate": sum(counts) / (time.perf_counter() - started), "errors": len(errors)}


def task_cycle(server, token: str, stacks: int = 8) -> dict:
    """P4: `stacks` stacks enter BUSY (4 tasks each) at once, repeatedly; tasks/s until all are back in RUN.

    The observer watches /ws/stacks/ as the dashboard does: the server tells it when a stack is back
    in RUN. It used to ask GET /api/stacks/<id> for each stack every 10 ms (every 2 ms for the
    latency): on two cores, the web server's share of that polling took CPU from the workers it was
    timing. Those figures are still measured, as `polled_*`, to compare.
    """
    client = Client(server.port, token)
    keys = [f"p4-{i}" for i in range(stacks)]
    for key in keys:
        client.call("POST", "/api/events", {"stackId": key, "event": "LAUNCH", "machine": "bench"})
    with Watcher(server, token) as watcher:
        _cycle_rate(client, keys, watcher.wait_all_back, seconds=0)  # one round first: workers warm, caches full
        rate = _cycle_rate(client, keys, watcher.wait_all_back)
        latencies = [_next_latency(client, keys[0], watcher.wait_all_back) for _ in range(15)]
    polled_rate = _cycle_rate(client, keys, lambda sent: _wait_all(client, list(sent)))
    polled = [_next_latency(client, keys[0], lambda sent: _wait_all(client, list(sent), interval=0.002))
              for _ in range(15)]
    return {"tasks_per_s": rate, "next_p50_ms": statistics.median(latencies),
            "polled_tasks_per_s": polled_rate, "polled_next_p50_ms": statistics.median(polled)}


def _cycle_rate(client: Client, keys: list[str], wait, seconds: float = SECONDS) -> float:
    tasks, started = 0, time.perf_counter()
    while not tasks or time.perf_counter() - started < seconds:
        sent = {}
        for key in keys:
            status, body = client.call("POST", "/api/events", {"stackId": key, "event": "WORK"})
            assert status == 200, body
            sent[key] = body["seq"]
        wait(sent)
        tasks += 4 * len(keys)
    return tasks / (time.perf_counter() - started)


def _next_latency(client: Client, key: str, wait) -> float:
    """One stack alone: event accepted (its answer arrived) → NEXT applied (seen back in RUN), in ms."""
    status, body = client.call("POST", "/api/events", {"stackId": key, "event": "WORK"})
    assert status == 200, body
    accepted = time.perf_counter()
    wait({key: body["seq"]})
    return (time.perf_counter() - accepted) * 1000


class Watcher:
    """Follows /ws/stacks/ in a thread: the newest (seq, state) of every stack."""

    def __init__(self, server, token: str):
        from websockets.sync.client import connect

        self.ws = connect(server.url.replace("http://", "ws://") + "/ws/stacks/", origin=server.url,
                          additional_headers={"Authorization": f"Bearer {token}"})
        self.seen: dict[str, tuple[int, str]] = {}
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Watcher:
        self._note(json.loads(self.ws.recv(timeout=30)))  # the snapshot sent on connect
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()
        self.thread.join(timeout=5)

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in self.ws:
                self._note(json.loads(frame))
        except ConnectionClosed:
            pass

    def _note(self, message: dict) -> None:
        stacks = message.get("stacks") or ([message["stack"]] if message.get("stack") else [])
        with self.changed:
            for stack in stacks:
                if stack["seq"] > self.seen.get(stack["id"], (-1, ""))[0]:
                    self.seen[stack["id"]] = (stack["seq"], stack["state"])
            self.changed.notify_all()

    def wait_all_back(self, sent: dict[str, int], timeout: float = 60) -> None:
        """Until every stack in `sent` (id → seq of its WORK) is seen in RUN after that WORK."""
        def back(key: str) -> bool:
            seq, state = self.seen.get(key, (-1, ""))
            return seq > sent[key] and state == "RUN"

        with self.changed:
            if not self.changed.wait_for(lambda: all(back(key) for key in sent), timeout):
                raise RuntimeError(f"stacks {sorted(k for k in sent if not back(k))} did not finish their tasks")


def _wait_all(client: Client, keys: list[str], interval: float = 0.01, timeout: float = 60) -> None:
    deadline = time.perf_counter() + timeout
    waiting = set(keys)
    while waiting:
        for key in list(waiting):
            status, body = client.call("GET", f"/api/stacks/{key}")
            if body.get("state") == "RUN":
                waiting.discard(key)
        if time.perf_counter() > deadline:
            raise RuntimeError(f"stacks {sorted(waiting)} did not finish their tasks")
        if waiting:
            time.sleep(interval)


def raw_rq_rate(redis_url: str, jobs: int = 600) -> float:
    """No-op jobs/s on 2 SimpleWorkers (burst mode, the jobs enqueued before the workers start).

    Timed by the jobs themselves, from the first one's start to the last one's end, so starting the
    workers is not part of the rate. (It used to subtract the time of a third worker's empty burst
    run, started beside the two: on a busy machine that swung the reference from 200 to 700 jobs/s,
    once to 330 000.)
    """
    import redis
    from rq import Queue
    from rq.job import Job

    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    queue = Queue("bench", connection=conn)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ids = [job.id for job in queue.enqueue_many([Queue.prepare_data(noop, result_ttl=600) for _ in range(jobs)])]
    workers = [subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "rq.SimpleWorker",
                                 "-u", redis_url, "-q", "bench"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    for worker in workers:
        worker.wait(120)
    done = [job for job in Job.fetch_many(ids, connection=conn) if job is not None and job.ended_at]
    conn.flushdb()
    first, last = min(job.started_at for job in done), max(job.ended_at for job in done)
    return len(done) / max((last - first).total_seconds(), 1e-3)


def measure(database_url: str, web: int = 1, tasks: bool = True) -> dict:
    """P3 (and P4 when `tasks`) on a `serve --web <web>` with 2 workers, on a fresh database."""
    sys.path.insert(0, str(ROOT))
    from tests.live_server import Server

    server = Server(workers=2, web=web, include_demo_machines=False, env={
        "DATABASE_URL": database_url, "CLOUDSEAM_LOG_LEVEL": "WARNING"})
    try:
        server.start()
        token = server.token("admin")
        status, body = server.api("PUT", "/api/machines/bench", raw=MACHINE.encode(), content_type="application/yaml")
        assert status in (200, 201), body
        return {"post": post_rate(server, token), **({"tasks": task_cycle(server, token)} if tasks else {})}
    finally:
        server.cleanup()
