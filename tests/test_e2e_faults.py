"""Faults against a real `serve`: kill -9 of a worker mid-task, 200 WebSockets leaving at once."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest
import redis
import websockets

from tests.live_server import Server

pytestmark = pytest.mark.e2e

STUBBORN_MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [stubborn]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE:
    terminal: true
tasks:
  stubborn:
    executor: shell
    config:
      command:
        - python3
        - -c
        - |
          import json, os, signal, subprocess, sys, time
          signal.signal(signal.SIGTERM, lambda *a: print('ignoring SIGTERM', flush=True))
          path = json.loads(os.environ['CLOUDSEAM_METADATA'])['stamps']
          me = os.environ['CLOUDSEAM_TASK_ID']
          writer = ("import sys, time\\n"
                    "end = time.time() + 4\\n"
                    "while time.time() < end:\\n"
                    "    open(sys.argv[1], 'a').write(f'{sys.argv[2]} {time.time()!r}\\\\n')\\n"
                    "    time.sleep(0.05)\\n")
          subprocess.run([sys.executable, '-c', writer, path, me])
          print('done', flush=True)
"""


@pytest.fixture(scope="module")
def server():
    if os.environ.get("CLOUDSEAM_TEST_DATABASE") == "postgres":
        pytest.skip("end-to-end tests run in the SQLite pass")
    running = Server(workers=2, machines={"stubborn": STUBBORN_MACHINE}, include_demo_machines=False).start()
    yield running
    running.cleanup()


def _task_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or []):
            found.append(process)
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_it_kills_a_tasks_whole_tree_with_its_worker_and_never_runs_it_twice_at_once(server, tmp_path):
    stamps = tmp_path / "stamps.txt"
    status, body = server.api("POST", "/api/events", {"stackId": "stubborn-1", "event": "LAUNCH",
                                                      "machine": "stubborn", "metadata": {"stamps": str(stamps)}})
    assert status == 200, body
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not stamps.exists() or len(stamps.read_text().splitlines()) < 5):
        time.sleep(0.1)
    writers = _task_processes(str(stamps))
    assert writers, "the task's grandchild never started"
    worker = next(p for p in writers[0].parents() if "rqworker" in " ".join(p.cmdline()))
    # The task's processes: its guard and everything under it (the worker's RQ scheduler child is not
    # part of the task; it notices its worker is gone by itself).
    guards = [p for p in worker.children(recursive=True) if any("guard.py" in part for part in p.cmdline())]
    tree = [p.pid for guard in guards for p in (guard, *guard.children(recursive=True))]
    assert tree, "no guard process under the worker"
    first_run = stamps.read_text().split()[0]

    worker.send_signal(signal.SIGKILL)

    gone, alive = psutil.wait_procs([psutil.Process(pid) for pid in tree if psutil.pid_exists(pid)], timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "processes of the task outlived its worker"
    assert not _task_processes(str(stamps))
    stack = server.wait_for("stubborn-1", lambda s: s["tasks"] and s["tasks"][0]["status"] == "ERROR", timeout=60)
    assert "stopped responding" in stack["tasks"][0]["errorMessage"]

    status, body = server.api("POST", "/api/events", {"stackId": "stubborn-1", "event": "RETRY_FAILED_TASKS"})
    assert status == 200, body
    server.wait_for("stubborn-1", lambda s: s["removed"] or s["state"] == "DONE", timeout=60)

    runs: dict[str, list[float]] = {}
    for line in stamps.read_text().splitlines():
        run, moment = line.split()
        runs.setdefault(run, []).append(float(moment))
    assert len(runs) == 2 and first_run in runs
    second_run = next(run for run in runs if run != first_run)
    assert max(runs[first_run]) < min(runs[second_run]), "the two runs overlapped"


def test_it_leaves_no_group_member_behind_when_200_watchers_leave_at_once(server):
    token = server.token("viewer")
    url = server.url.replace("http://", "ws://") + "/ws/stacks/"

    async def scenario() -> None:
        sockets = []
        for _ in range(200):
            sockets.append(await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                                    open_timeout=30))
        await asyncio.gather(*(s.recv() for s in sockets))
        await asyncio.gather(*(s.close() for s in sockets))

    asyncio.run(scenario())
    client = redis.Redis(unix_socket_path=str(_redis_socket(server)))
    deadline = time.monotonic() + 20
    members = -1
    while time.monotonic() < deadline:
        members = sum(client.zcard(key) for key in client.scan_iter("cloudseam:group:*"))
        if members == 0:
            break
        time.sleep(0.5)
    assert members == 0
    log = "\n".join(server.output)
    assert "MaxConnectionsError" not in log and "Too many connections" not in log


def _redis_socket(server: Server):
    import hashlib
    from pathlib import Path

    socket = server.data_dir / "redis.sock"
    if len(str(socket)) > 100:
        socket = Path("/tmp") / f"cloudseam-{hashlib.sha256(bytes(server.data_dir)).hexdigest()[:16]}.sock"
    return socket
