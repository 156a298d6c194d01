"""Triage in a real browser against a real CloudSeam: quick filter "Failed", tick two stacks, retry both.

Uses the fixtures of tests/test_browser.py (Debian's Chromium, `serve` with Redis and two workers).
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.test_browser import browser, launch, logged_in, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def wait_for(server, stack_id: str, check, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = server.api("GET", f"/api/stacks/{stack_id}")
        if status == 200 and check(body):
            return body
        assert time.monotonic() < deadline, f"{stack_id} never got there: {body}"
        time.sleep(0.5)


def has_failed(body: dict) -> bool:
    return any(t["status"] == "ERROR" for t in body["tasks"])


def test_it_retries_two_failed_stacks_from_the_quick_filter(logged_in: Page, cloudseam_server):  # noqa: F811 - fixture
    tab = logged_in
    prefix = f"triage-{uuid.uuid4().hex[:6]}"
    stacks = [f"{prefix}-a", f"{prefix}-b"]
    for stack_id in stacks:
        launch(cloudseam_server, stack_id, "flaky-deploy")
    for stack_id in stacks:
        wait_for(cloudseam_server, stack_id, has_failed)
        # Fix the cause, so that the retry succeeds: the health check passes once healthy is true.
        status, _ = cloudseam_server.api("POST", "/api/events", {"stackId": stack_id, "event": "UPDATE_METADATA",
                                                                 "metadata": {"healthy": True}})
        assert status == 200
    tab.goto(f"/?q={prefix}")
    failed = tab.locator('#quick-filters a[data-status="failed"]')
    expect(failed.locator(".count")).to_have_text("2")
    failed.click()
    expect(tab).to_have_url(re.compile(r"status=failed"))
    expect(tab.locator("#filters-apply")).to_be_hidden()  # filters apply at once with scripts on
    expect(tab.locator("#stack-rows tr")).to_have_count(2)
    for stack_id in stacks:
        tab.get_by_label(f"Tick {stack_id}").check()
    expect(tab.locator("#bulk-selected")).to_have_text("2")
    tab.get_by_role("button", name="Retry failed tasks").click()
    expect(tab.locator("#bulk-summary")).to_contain_text("2 stacks done")
    for stack_id in stacks:
        expect(tab.locator(f'#bulk-done li[data-stack="{stack_id}"]')).to_be_visible()
    for stack_id in stacks:
        body = wait_for(cloudseam_server, stack_id, lambda b: b["state"] == "APPROVAL")
        assert not has_failed(body)
        _, history = cloudseam_server.api("GET", f"/api/stacks/{stack_id}/history")
        retries = [e for e in history["results"] if e["event"] == "RETRY_FAILED_TASKS"]
        assert [(e["outcome"], e["source"]) for e in retries] == [("applied", "ui")]
    tab.locator("#bulk-back").click()
    expect(tab).to_have_url(re.compile(r"status=failed"))
    expect(tab.locator('#quick-filters a[data-status="failed"] .count')).to_have_text("0")
