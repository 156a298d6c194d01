"""End to end: a real `serve` (Daphne, embedded Redis, RQ workers with their scheduler). A task fails,
the machine's notify rule fires, and a local listener receives the signed notification — after a 500
first, so RQ's scheduled retry is exercised too."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.listener import Listener
from tests.live_server import Server

pytestmark = pytest.mark.e2e

FAILING_MACHINE = """
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: DEPLOY}]
  DEPLOY:
    tasks: [deploy]
    on:
      NEXT: [{action: advance, state: DONE}]
  DONE:
    terminal: true
tasks:
  deploy: {executor: sleep, config: {seconds: 0.1, fail: 1}}
notify:
  - {on: task_failed, target: ops-hook}
"""
SECRET = "e2e-notify-secret"


def wait_for(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def listener():
    with Listener([(500, {}, b"not yet"), (200, {}, b"thanks")]) as running:
        yield running


def test_it_sends_a_signed_notification_when_a_task_fails(listener):
    server = Server(workers=1, machines={"failing": FAILING_MACHINE}, include_demo_machines=False,
                    env={"CLOUDSEAM_OUTBOUND_ALLOW": "127.0.0.1", "CLOUDSEAM_NOTIFY_RETRY_INTERVALS": "1"})
    server.env["CLOUDSEAM_PUBLIC_URL"] = server.url
    try:
        server.start()
        created = server.manage("shell", "-c", (
            "from stacks.notifications.models import NotificationTarget; "
            f"NotificationTarget.objects.create(name='ops-hook', url='{listener.url('/hook')}', secret='{SECRET}')"))
        assert created.returncode == 0, created.stderr
        status, _ = server.api("POST", "/api/events", {"stackId": "feature-9", "event": "LAUNCH",
                                                       "machine": "failing"})
        assert status == 200
        assert wait_for(lambda: len(listener.received) >= 2), (listener.received, server.output[-30:])
    finally:
        server.cleanup()
    first, second = listener.received[:2]
    for request in (first, second):
        raw = request["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert request["headers"]["X-CloudSeam-Signature-256"] == expected
    body = json.loads(second["body"])
    assert body["type"] == "task_failed" and body["attempt"] == 2
    assert body["stack"]["id"] == "feature-9" and body["failedTasks"][0]["name"] == "deploy"
    assert "failed on purpose" in body["failedTasks"][0]["errorMessage"]
    assert body["url"] == f"{server.url}/stacks/feature-9/"
