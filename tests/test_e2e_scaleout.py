"""Scale-out, proven (issue #10): the README's production setup on one machine.

Two `serve` processes (web A with 2 workers, web B with 1) share one PostgreSQL database and one
Redis. Stacks are created through both; a watcher on B sees what is posted to A; a worker killed with
`kill -9` mid-task is noticed and its task retried once; every event carries its own message id (some
sent twice, through both web processes at once) and each is applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import psutil
import pytest
import websockets

from tests.live_server import Server

pytestmark = pytest.mark.e2e

POSTGRES = "postgres://postgres@127.0.0.1:5432"
E2E_DB = "cs_scaleout_e2e"
REDIS_URL = "redis://127.0.0.1:6379/14"

MACHINE = """
version: 1
events: [LAUNCH, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: PROVISION}]
  PROVISION:
    tasks: [warm]
    on:
      NEXT: [{action: advance, state: CONFIGURE}]
  CONFIGURE:
    tasks: [setup]
    on:
      NEXT: [{action: advance, state: RUNNING}]
  RUNNING:
    on:
      DESTROY: [{action: advance, state: TEARDOWN}]
  TEARDOWN:
    tasks: [cleanup]
    on:
      NEXT: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  warm:
    executor: sleep
    config: {seconds: 0.2}
  setup:
    executor: shell
    config:
      command:
        - python3
        - -c
        - |
          import json, os, time
          marker = json.loads(os.environ['CLOUDSEAM_METADATA']).get('marker')
          if marker and not os.path.exists(marker):
              with open(marker + '.tmp', 'w') as out:
                  out.write(str(os.getpid()))
              os.rename(marker + '.tmp', marker)
              time.sleep(30)  # the first run is killed with its worker long before this ends
          print('set up', flush=True)
  cleanup:
    executor: shell
    config:
      command: [python3, -c, "print('cleaned up')"]
"""

THROUGH_A = ("scale-a1", "scale-a2", "scale-kill")
THROUGH_B = ("scale-b1", "scale-b2")
KILLED = "scale-kill"

# (event, source, fromState, toState, task) of each history entry, oldest first.
# One task per state, so that the order of the entries does not depend on which worker is quicker.
PLAIN_HISTORY = [
    ("LAUNCH", "api", None, "PROVISION", None),
    ("TASK_COMPLETED", "worker", "PROVISION", "CONFIGURE", "warm"),
    ("TASK_COMPLETED", "worker", "CONFIGURE", "RUNNING", "setup"),
    ("DESTROY", "api", "RUNNING", "TEARDOWN", None),
    ("TASK_COMPLETED", "worker", "TEARDOWN", "GONE", "cleanup"),
]
KILLED_HISTORY = [
    ("LAUNCH", "api", None, "PROVISION", None),
    ("TASK_COMPLETED", "worker", "PROVISION", "CONFIGURE", "warm"),
    ("TASK_ERROR", "system", "CONFIGURE", "CONFIGURE", "setup"),
    ("RETRY_FAILED_TASKS", "api", "CONFIGURE", "CONFIGURE", None),
    ("TASK_COMPLETED", "worker", "CONFIGURE", "RUNNING", "setup"),
    ("DESTROY", "api", "RUNNING", "TEARDOWN", None),
    ("TASK_COMPLETED", "worker", "TEARDOWN", "GONE", "cleanup"),
]


def _fresh_database() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server for the scale-out test: {exc}")
    with admin:
        admin.execute(f"DROP DATABASE IF EXISTS {E2E_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {E2E_DB}")
    return f"{POSTGRES}/{E2E_DB}"


def _drop_database() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {E2E_DB} WITH (FORCE)")


def _flush_redis(*, skip: bool = True) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).flushdb()
    except redis.RedisError as exc:
        if not skip:
            raise
        pytest.skip(f"no Redis server at 127.0.0.1:6379 for the scale-out test: {exc}")


class Watcher:
    """A script watching /ws/stacks/ with a bearer token and no Origin, in a thread of its own."""

    def __init__(self, server: Server, token: str):
        self.url = server.url.replace("http://", "ws://") + "/ws/stacks/"
        self.token = token
        self.frames: list[dict] = []
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Watcher:
        self.thread.start()
        assert self.ready.wait(20), "no snapshot from web B"
        assert self.error is None, self.error
        assert self.frames[0]["type"] == "snapshot"
        return self

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                          open_timeout=20) as ws:
                while not self.stop.is_set():
                    try:
                        frame = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    self.frames.append(json.loads(frame))
                    self.ready.set()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)

    def frames_of(self, stack_id: str) -> list[dict]:
        return [f for f in self.frames if f.get("type", "").startswith("stack.") and f["stack"]["id"] == stack_id]


class Sender:
    """Every event goes out with an id of its own; `sent` keeps (id, stack, event) for the final check."""

    def __init__(self, operator_token: str):
        self.token = operator_token
        self.sent: dict[str, tuple[str, str]] = {}
        self._numbers = count(1)
        self._lock = threading.Lock()

    def message(self, stack_id: str, event: str, **fields) -> dict:
        with self._lock:
            message_id = f"scaleout-{next(self._numbers)}-{stack_id}-{event}"
            self.sent[message_id] = (stack_id, event)
        return {"stackId": stack_id, "event": event, "id": message_id, **fields}

    def post(self, server: Server, message: dict) -> tuple[int, dict]:
        return server.api("POST", "/api/events", message, role="operator")


def _wait(server: Server, stack_id: str, predicate, timeout: float, deadline: float) -> dict:
    return server.wait_for(stack_id, predicate, timeout=max(1.0, min(timeout, deadline - time.monotonic())),
                           role="operator")


def _running(stack: dict) -> bool:
    return stack["state"] == "RUNNING"


def _removed(stack: dict) -> bool:
    return stack["removed"] and stack["state"] == "GONE"


def _worker_of(pid: int) -> psutil.Process:
    """The rqworker process a task's command runs under (worker -> guard -> command)."""
    for parent in psutil.Process(pid).parents():
        if "rqworker" in " ".join(parent.cmdline()):
            return parent
    raise AssertionError(f"process {pid} does not run under an rqworker")


def _launch_everything(a: Server, b: Server, sender: Sender, marker: Path) -> dict[str, dict]:
    """LAUNCH through A and B at once, then the same messages again through the other web process."""
    plan = [(a, b, stack_id) for stack_id in THROUGH_A] + [(b, a, stack_id) for stack_id in THROUGH_B]
    messages = {stack_id: sender.message(stack_id, "LAUNCH", machine="scaleout",
                                         metadata={"marker": str(marker)} if stack_id == KILLED else {})
                for _, _, stack_id in plan}
    with ThreadPoolExecutor(len(plan)) as pool:
        first = dict(zip(messages, pool.map(lambda p: sender.post(p[0], messages[p[2]]), plan), strict=True))
        again = dict(zip(messages, pool.map(lambda p: sender.post(p[1], messages[p[2]]), plan), strict=True))
    for stack_id, (status, body) in first.items():
        assert status == 200 and body["state"] == "PROVISION", (stack_id, status, body)
        assert again[stack_id] == (200, body), f"a repeated LAUNCH of {stack_id} got another answer"
    return {stack_id: body for stack_id, (_, body) in first.items()}


def _kill_the_worker_running(marker: Path, servers: list[Server], deadline: float) -> psutil.Process:
    while not marker.exists():
        assert time.monotonic() < deadline, "the task to kill never started"
        time.sleep(0.1)
    task_pid = int(marker.read_text())
    worker = _worker_of(task_pid)
    assert any(worker.pid == child.pid for server in servers for child in server.children())
    task = psutil.Process(task_pid)
    tree = [task, *(p for p in task.parents() if p.pid != worker.pid and worker.pid in {q.pid for q in p.parents()})]
    worker.send_signal(signal.SIGKILL)  # its RQ scheduler child, if it has one, is not part of the task
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "the killed worker's task kept running"
    return worker


def _destroy(a: Server, b: Server, sender: Sender, stack_ids) -> None:
    """DESTROY each stack through A and B at the same moment, with the same id: applied once."""
    messages = [sender.message(stack_id, "DESTROY") for stack_id in stack_ids]
    with ThreadPoolExecutor(2 * len(messages)) as pool:
        answers = list(pool.map(lambda job: sender.post(*job), [(s, m) for m in messages for s in (a, b)]))
    for message, one, other in zip(messages, answers[::2], answers[1::2], strict=True):
        assert one[0] == 200 and one[1]["state"] == "TEARDOWN", (message, one)
        assert one == other, f"the two copies of {message['id']} got different answers: {one} / {other}"


def _history(server: Server, record: int) -> list[dict]:
    status, body = server.api("GET", f"/api/stacks/removed/{record}/history?pageSize=500", role="operator")
    assert status == 200 and body["removed"], body
    return sorted(body["results"], key=lambda entry: entry["id"])


def _task_name(entry: dict) -> str | None:
    return entry["task"].split(" (instance")[0] if entry["task"] else None


def _check_history(server: Server, stack_id: str, final: dict) -> int:
    """The stack's history is exactly the expected transitions, each applied once; returns their count."""
    history = _history(server, final["record"])
    expected = KILLED_HISTORY if stack_id == KILLED else PLAIN_HISTORY
    got = [(e["event"], e["source"], e["fromState"], e["toState"], _task_name(e)) for e in history]
    assert got == expected, f"history of {stack_id}:\n" + "\n".join(
        f"{g} {e['outcome']} {e['actor']} {e['error']}" for g, e in zip(got, history, strict=True))
    assert {e["outcome"] for e in history} == {"applied"}, history
    if stack_id == KILLED:
        lost = next(e for e in history if e["event"] == "TASK_ERROR")
        assert lost["actor"] == "liveness-check"
    return len(history)


def _check_retried_once(server: Server, record: int) -> None:
    status, body = server.api("GET", f"/api/stacks/removed/{record}/tasks?name=setup", role="operator")
    assert status == 200, body
    outcomes = sorted(attempt["outcome"] for attempt in body["results"])
    assert outcomes == ["lost", "succeeded"], body["results"]


def _check_message_ids(database_url: str, sent: dict[str, tuple[str, str]]) -> None:
    import psycopg

    with psycopg.connect(database_url) as db:
        rows = db.execute("SELECT message_id, stack_key, event, outcome FROM stacks_stackevent "
                          "WHERE message_id IS NOT NULL").fetchall()
    recorded: dict[str, list[tuple[str, str, str]]] = {}
    for message_id, stack_key, event, outcome in rows:
        recorded.setdefault(message_id, []).append((stack_key, event, outcome))
    assert set(recorded) == set(sent), (set(sent) ^ set(recorded))
    for message_id, (stack_id, event) in sent.items():
        assert recorded[message_id] == [(stack_id, event, "applied")], (message_id, recorded[message_id])


def _check_watcher_saw(watcher: Watcher, stack_id: str, launched: dict, final: dict, applied: int) -> None:
    frames = watcher.frames_of(stack_id)
    seqs = {frame["stack"]["seq"] for frame in frames}
    assert final["seq"] - launched["seq"] + 1 == applied, (launched["seq"], final["seq"], applied)
    missing = set(range(launched["seq"], final["seq"] + 1)) - seqs
    assert not missing, f"web B's watcher missed changes {sorted(missing)} of {stack_id}"
    assert {"PROVISION", "CONFIGURE", "RUNNING", "TEARDOWN", "GONE"} <= {frame["stack"]["state"] for frame in frames}
    assert any(frame["type"] == "stack.removed" and frame["stack"]["removed"] for frame in frames)


def _wait_for_frames(watcher: Watcher, launched: dict, finals: dict, timeout: float = 10) -> None:
    """Until web B's watcher has every change of the stacks sent through A, up to their removal (or
    `timeout`: then the checks say what it missed)."""
    def complete(stack_id: str) -> bool:
        frames = watcher.frames_of(stack_id)
        seqs = {frame["stack"]["seq"] for frame in frames}
        return (set(range(launched[stack_id]["seq"], finals[stack_id]["seq"] + 1)) <= seqs
                and any(frame["type"] == "stack.removed" for frame in frames))

    deadline = time.monotonic() + timeout
    while not all(complete(stack_id) for stack_id in THROUGH_A) and time.monotonic() < deadline:
        time.sleep(0.05)


def _scenario(a: Server, b: Server, database_url: str, marker: Path) -> None:
    deadline = time.monotonic() + 75
    sender = Sender(a.token("operator"))  # tokens live in the shared database: one works on both
    b._tokens["operator"] = sender.token
    watcher = Watcher(b, sender.token).start()
    try:
        launched = _launch_everything(a, b, sender, marker)
        killed_worker = _kill_the_worker_running(marker, [a, b], deadline)

        plain = [s for s in (*THROUGH_A, *THROUGH_B) if s != KILLED]
        for index, stack_id in enumerate(plain):
            _wait((a, b)[index % 2], stack_id, _running, 30, deadline)
        _destroy(a, b, sender, plain)

        stack = _wait(b, KILLED, lambda s: any(t["status"] == "ERROR" for t in s["tasks"]), 30, deadline)
        failed = next(t for t in stack["tasks"] if t["status"] == "ERROR")
        assert failed["name"] == "setup" and "stopped responding" in failed["errorMessage"], stack
        status, body = sender.post(b, sender.message(KILLED, "RETRY_FAILED_TASKS"))
        assert status == 200, body
        _wait(a, KILLED, _running, 30, deadline)
        _destroy(a, b, sender, [KILLED])

        finals = {s: _wait((a, b)[i % 2], s, _removed, 30, deadline) for i, s in enumerate((*THROUGH_A, *THROUGH_B))}
        _wait_for_frames(watcher, launched, finals)  # the last live frames are on their way from the workers
    finally:
        watcher.close()
    assert watcher.error is None, watcher.error
    applied = {stack_id: _check_history(a, stack_id, final) for stack_id, final in finals.items()}
    _check_retried_once(b, finals[KILLED]["record"])
    _check_message_ids(database_url, sender.sent)
    for stack_id in THROUGH_A:
        _check_watcher_saw(watcher, stack_id, launched[stack_id], finals[stack_id], applied[stack_id])
    assert not psutil.pid_exists(killed_worker.pid) or killed_worker.status() == psutil.STATUS_ZOMBIE


def test_two_web_processes_and_three_workers_share_postgresql_and_redis_without_losing_an_event(tmp_path):
    if os.environ.get("CLOUDSEAM_TEST_DATABASE") == "postgres":
        pytest.skip("end-to-end tests run in the SQLite pass")
    env = {"DATABASE_URL": _fresh_database(), "REDIS_URL": REDIS_URL}
    _flush_redis()
    servers: list[Server] = []
    try:
        for workers in (2, 1):  # one after the other: the first one migrates the shared database
            servers.append(Server(workers=workers, env=env, machines={"scaleout": MACHINE},
                                  include_demo_machines=False))
            servers[-1].start()
        _scenario(*servers, env["DATABASE_URL"], tmp_path / "first-run.pid")
    finally:
        for server in servers:
            server.cleanup()
        _flush_redis(skip=False)
        _drop_database()
