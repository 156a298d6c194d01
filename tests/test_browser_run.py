"""The run record in a real browser (issue #8): a stack goes PROVISION → RUN; its page keeps
PROVISION's task output, marks the path on the diagram, and the timeline scrubber (keyboard only)
moves the highlight back to PROVISION and forward again; a failed attempt's output is open.

Same set-up as tests/test_browser.py: Debian's Chromium through Playwright against a real `serve`.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.test_browser import browser, launch, logged_in, page, shoot, unique  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def expect_current(tab: Page, state: str) -> None:
    expect(tab.locator(f'#diagram g.node[id="state-{state}"]')).to_have_class(re.compile(r"\bcurrent\b"))
    expect(tab.locator("#diagram g.node.current")).to_have_count(1)


def test_it_keeps_the_run_visible_and_scrubs_through_it_from_the_keyboard(logged_in: Page, cloudseam_server):  # noqa: F811
    tab = logged_in
    stack_id = unique("run")
    launch(cloudseam_server, stack_id, "qa-env")
    tab.goto(f"/stacks/{stack_id}/")
    tab.evaluate("window.__noReload = true")
    # The stack moves on by itself (its two tasks finish): the page follows live, and keeps PROVISION's output.
    expect(tab.locator("#stack-state")).to_have_text("RUN")
    expect_current(tab, "RUN")
    provision = tab.locator("#run tbody.visit[data-state=PROVISION]")
    expect(provision.locator("li.attempt")).to_have_count(2)
    db = provision.locator("li.attempt").filter(has_text="db-setup")
    db.locator("summary").click()
    expect(db.locator("pre.output")).to_contain_text("database ready")
    assert tab.evaluate("window.__noReload === true"), "the page was reloaded"

    # The path: both transitions taken, PROVISION visited.
    expect(tab.locator('#diagram g.node[id="state-PROVISION"]')).to_have_class(re.compile(r"\bvisited\b"))
    next_edge = tab.locator('#diagram g.edge[id="edge-PROVISION--RUN-next"]')
    expect(next_edge).to_have_class(re.compile(r"\bfollowed\b"))

    # The scrubber, from the keyboard only: back to the first entry (PROVISION), then to the present.
    slider = tab.locator("#timeline-slider")
    expect(tab.locator("[data-scrubber]")).to_be_visible()
    slider.focus()
    tab.keyboard.press("Home")
    expect_current(tab, "PROVISION")
    expect(next_edge).not_to_have_class(re.compile(r"\bfollowed\b"))
    expect(tab.locator("#frame-view")).to_be_visible()
    expect(tab.locator("#frame-tasks")).to_contain_text("PENDING")
    expect(tab.locator("#timeline-caption")).to_contain_text("LAUNCH")
    tab.keyboard.press("End")
    expect_current(tab, "RUN")
    expect(next_edge).to_have_class(re.compile(r"\bfollowed\b"))
    expect(tab.locator("#frame-view")).to_be_hidden()
    tab.keyboard.press("ArrowLeft")
    expect_current(tab, "PROVISION")
    tab.keyboard.press("Escape")
    expect_current(tab, "RUN")
    shoot(tab, "stack-run-record")

    # Removed, the record stays, scrubber included: back to PROVISION and forward to DESTROY.
    status, _ = cloudseam_server.api("POST", "/api/events", {"stackId": stack_id, "event": "DESTROY"})
    assert status == 200
    record = cloudseam_server.wait_for(stack_id, lambda s: s["removed"])["record"]
    tab.goto(f"/stacks/removed/{record}/")
    expect(tab.locator("#run tbody.visit[data-state=PROVISION] li.attempt")).to_have_count(2)
    expect(tab.locator("[data-scrubber]")).to_be_visible()
    tab.locator("#timeline-slider").focus()
    tab.keyboard.press("Home")
    expect_current(tab, "PROVISION")
    tab.keyboard.press("End")
    expect_current(tab, "DESTROY")

    # A failed attempt's output is open without a click.
    failing = unique("failing")
    launch(cloudseam_server, failing, "flaky-deploy")
    cloudseam_server.wait_for(failing, lambda s: any(t["status"] == "ERROR" for t in s["tasks"]))
    tab.goto(f"/stacks/{failing}/")
    health = tab.locator("#run li.attempt").filter(has_text="health-check")
    expect(health.locator("details")).to_have_attribute("open", "")
    expect(health.locator("pre.output")).to_contain_text("metadata healthy")
    expect(tab.locator("tbody.task").filter(has_text="health-check").locator(".task-phase")).to_have_text("failed")
    retry = tab.locator("tbody.task").filter(has_text="health-check").get_by_role("button", name="Retry this task")
    expect(retry).to_be_visible()
    tab.set_viewport_size({"width": 390, "height": 844})
    expect(tab.locator("tbody.task").filter(has_text="health-check").locator(".task-error")).to_be_visible()
    shoot(tab, "stack-run-record-narrow")
