"""The whole system for real: `serve` with its embedded Redis, two RQ worker processes, Daphne,
driven through the HTTP API, WebSockets and the command line."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import psutil
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.e2e

SLOW_TASK_MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: WORK}]
  WORK:
    tasks: [nap]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE:
    terminal: true
tasks:
  nap:
    executor: shell
    config:
      command:
        - python3
        - -c
        - |
          import json, os, time
          metadata = json.loads(os.environ['CLOUDSEAM_METADATA'])
          print('napping', flush=True)
          time.sleep(float(metadata.get('nap', 0)))
          print('awake')
"""


@pytest.fixture(scope="module")
def server(cloudseam_server):
    done = cloudseam_server.api("PUT", "/api/machines/slow", raw=SLOW_TASK_MACHINE.encode(),
                                content_type="application/yaml")
    assert done[0] in (200, 201), done
    return cloudseam_server


def test_it_advances_a_launched_stack_to_its_next_stable_state_by_itself(server):
    status, body = server.api("POST", "/api/events", {"stackId": "master", "event": "LAUNCH", "machine": "qa-env",
                                                      "metadata": {"apiImageTag": "e724e9"}}, role="operator")
    assert status == 200 and body["state"] == "PROVISION"
    stack = server.wait_for("master", lambda s: s["state"] == "RUN", timeout=60)
    assert stack["previousState"] == "PROVISION" and stack["tasks"] == []
    _, history = server.api("GET", "/api/stacks/master/history")
    events = [(h["event"], h["source"], h["toState"]) for h in reversed(history["results"])]
    assert events[0] == ("LAUNCH", "api", "PROVISION")
    assert ("TASK_COMPLETED", "worker", "RUN") in events


def test_it_shows_a_failing_shell_task_as_error_with_its_exit_code_and_retries_it(server):
    server.api("POST", "/api/events", {"stackId": "flaky-1", "event": "LAUNCH", "machine": "flaky-deploy"})
    stack = server.wait_for("flaky-1", lambda s: any(t["status"] == "ERROR" for t in s["tasks"]), timeout=60)
    failed = next(t for t in stack["tasks"] if t["status"] == "ERROR")
    assert failed["name"] == "health-check" and "exited with code 3" in failed["errorMessage"]
    assert "metadata healthy = null" in failed["errorMessage"]
    server.api("POST", "/api/events", {"stackId": "flaky-1", "event": "UPDATE_METADATA",
                                       "metadata": {"healthy": True}})
    status, retried = server.api("POST", "/api/events", {"stackId": "flaky-1", "event": "RETRY_FAILED_TASKS"})
    assert status == 200
    stack = server.wait_for("flaky-1", lambda s: s["state"] == "APPROVAL", timeout=60)
    assert [t["name"] for t in stack["tasks"]] == ["approve"]
    status, done = server.api("POST", "/api/events", {"stackId": "flaky-1", "event": "TASK_COMPLETED",
                                                      "task": {"name": "approve"}}, role="operator")
    assert status == 200 and done["state"] == "LIVE"


def _worker_running(server, marker: str) -> psutil.Process:
    for proc in server.children():
        try:
            if "rqworker" in " ".join(proc.cmdline()) and any(
                marker in " ".join(child.cmdline()) for child in proc.children(recursive=True)
            ):
                return proc
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("no worker is running the task")


def test_it_fails_a_task_whose_worker_is_killed_and_a_retry_then_succeeds(server):
    server.api("POST", "/api/events", {"stackId": "doomed", "event": "LAUNCH", "machine": "slow",
                                       "metadata": {"nap": 120}})
    server.wait_for("doomed", lambda s: s["tasks"] and s["tasks"][0]["startedAt"], timeout=30)
    deadline = time.monotonic() + 15
    while True:
        try:
            worker = _worker_running(server, "CLOUDSEAM_METADATA")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    task_processes = worker.children(recursive=True)
    killed_at = time.monotonic()
    worker.send_signal(signal.SIGKILL)
    stack = server.wait_for("doomed", lambda s: s["tasks"][0]["status"] == "ERROR", timeout=60)
    assert time.monotonic() - killed_at < 60
    assert "stopped responding" in stack["tasks"][0]["errorMessage"]
    gone, alive = psutil.wait_procs(task_processes, timeout=10)
    assert not alive, "the killed worker's task command kept running"
    server.api("POST", "/api/events", {"stackId": "doomed", "event": "UPDATE_METADATA", "metadata": {"nap": 0}})
    server.api("POST", "/api/events", {"stackId": "doomed", "event": "RETRY_FAILED_TASKS"})
    final = server.wait_for("doomed", lambda s: s["removed"], timeout=60)
    assert final["state"] == "DONE"


async def _ws_messages(server, path: str, action, *, until, role="viewer", timeout=30.0) -> list[dict]:
    headers = {"Authorization": f"Bearer {server.token(role)}"}
    url = server.url.replace("http://", "ws://") + path
    seen: list[dict] = []
    async with websockets.connect(url, additional_headers=headers, origin=server.url) as ws:
        seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        await asyncio.get_running_loop().run_in_executor(None, action)
        deadline = time.monotonic() + timeout
        while not until(seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))))
    return seen


def test_it_pushes_api_changes_to_connected_websocket_clients(server):
    def launch():
        server.api("POST", "/api/events", {"stackId": "watched", "event": "LAUNCH", "machine": "qa-env"})

    seen = asyncio.run(_ws_messages(
        server, "/ws/stacks/", launch,
        until=lambda msgs: any(m.get("stack", {}).get("id") == "watched" and m["stack"]["state"] == "RUN"
                               for m in msgs[1:])))
    assert seen[0]["type"] == "snapshot" and isinstance(seen[0]["stacks"], list)
    updates = [m for m in seen[1:] if m["stack"]["id"] == "watched"]
    assert updates[0]["type"] == "stack.updated" and updates[0]["stack"]["state"] == "PROVISION"


def test_it_streams_task_output_to_watchers_of_one_stack(server):
    def launch():
        server.api("POST", "/api/events", {"stackId": "chatty", "event": "LAUNCH", "machine": "slow",
                                           "metadata": {"nap": 0.5}})

    seen = asyncio.run(_ws_messages(
        server, "/ws/stacks/chatty/", launch,
        until=lambda msgs: any(m["type"] == "stack.removed" for m in msgs)))
    assert seen[0] == {"type": "snapshot", "stack": None} or seen[0]["type"] == "snapshot"
    lines = [line for m in seen if m["type"] == "task.output" for line in m["lines"]]
    assert "napping" in lines and "awake" in lines
    assert any(m["type"] == "stack.updated" and m["event"]["event"] == "LAUNCH" for m in seen)


def test_it_refuses_websockets_from_foreign_origins_and_anonymous_clients(server):
    url = server.url.replace("http://", "ws://") + "/ws/stacks/"

    async def foreign():
        headers = {"Authorization": f"Bearer {server.token('viewer')}"}
        async with websockets.connect(url, additional_headers=headers, origin="http://evil.example"):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(foreign())
    assert refused.value.response.status_code == 403

    async def anonymous():
        async with websockets.connect(url, origin=server.url) as ws:
            await asyncio.wait_for(ws.recv(), 10)

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        asyncio.run(anonymous())


def test_it_sends_events_from_the_command_line(server):
    done = server.manage("send_event", "cli-stack", "LAUNCH", "--machine", "qa-env", "--meta", "replicas=2",
                         "--meta", "tag=abc")
    assert done.returncode == 0, done.stderr
    stack = json.loads(done.stdout)
    assert stack["state"] == "PROVISION" and stack["metadata"] == {"replicas": 2, "tag": "abc"}
    refused = server.manage("send_event", "cli-stack", "FREEZE")
    assert refused.returncode == 1 and "FREEZE is not accepted by stack cli-stack" in refused.stderr
    _, history = server.api("GET", "/api/stacks/cli-stack/history")
    assert {h["source"] for h in history["results"]} == {"cli"}


def test_it_keeps_an_idle_websocket_connected_and_delivering(server):
    """Live pages sit idle for minutes; the channel layer's blocking reads must not time out.

    The page of one stack that nothing else touches: the shared server's other stacks may move, but
    no frame reaches this connection while it is meant to be idle (checked), so its reads really wait.
    """

    async def idle_then_change() -> list[dict]:
        headers = {"Authorization": f"Bearer {server.token('viewer')}"}
        url = server.url.replace("http://", "ws://") + "/ws/stacks/idle-watch/"
        async with websockets.connect(url, additional_headers=headers, origin=server.url) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(TimeoutError):  # longer than redis-py's default 5 s socket timeout, twice over
                await asyncio.wait_for(ws.recv(), 12)
            await asyncio.get_running_loop().run_in_executor(None, lambda: server.api(
                "POST", "/api/events", {"stackId": "idle-watch", "event": "LAUNCH", "machine": "qa-env"}))
            return [first, json.loads(await asyncio.wait_for(ws.recv(), 10))]

    snapshot, update = asyncio.run(idle_then_change())
    assert snapshot == {"type": "snapshot", "stack": None}
    assert update["type"] == "stack.updated" and update["stack"]["id"] == "idle-watch"


def _login(server, username: str, password: str, forwarded_for: str) -> str:
    """Post the login form like a browser would, from a claimed address; returns the page shown."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(server.url + "/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(server.url + "/accounts/login/", data=data.encode(), method="POST",
                                     headers={"X-Forwarded-For": forwarded_for, "Referer": server.url + "/"})
    with opener.open(request, timeout=10) as response:
        return response.geturl() + "\n" + response.read().decode()


def test_it_cannot_be_talked_out_of_a_login_lockout_with_forwarded_for(server):
    password = "a-long-password-for-lockout-tests"
    done = server.manage("shell", "-c", "from django.contrib.auth.models import User; "
                         f"User.objects.create_user('lockme', password='{password}')")
    assert done.returncode == 0, done.stderr
    for i in range(5):
        _login(server, "lockme", "wrong", forwarded_for=f"203.0.113.{i}")
    page = _login(server, "lockme", password, forwarded_for="198.51.100.77")
    assert "Too many failed logins" in page


def test_it_lets_token_clients_without_an_origin_connect_but_never_cookie_ones(server):
    url = server.url.replace("http://", "ws://") + "/ws/stacks/"

    async def token_client() -> dict:
        headers = {"Authorization": f"Bearer {server.token('viewer')}"}
        async with websockets.connect(url, additional_headers=headers) as ws:  # no Origin header at all
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert asyncio.run(token_client())["type"] == "snapshot"

    async def bad_token_client():
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer cs_nope"}) as ws:
            await asyncio.wait_for(ws.recv(), 10)

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        asyncio.run(bad_token_client())
