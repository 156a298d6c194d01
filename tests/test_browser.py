"""The pages in a real browser (Debian's Chromium through Playwright) against a real CloudSeam:
`serve` with its embedded Redis and two workers (the `cloudseam_server` fixture).

Each test acts like a person: logs in through the form, clicks buttons, types. Nothing reloads the
page while a stack moves: a marker set on `window` must survive, so every change seen came over
the WebSocket. Screenshots of the key pages, in light and dark schemes, go to test-artifacts/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
XSS = "<img src=x onerror=alert(1)>"
LIVE = 30_000  # ms: how long a live change may take to show (tasks run for a few seconds)
BROKEN_MACHINE = """\
version: 1
events: [LAUNCH]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUNN}]
  RUN:
    terminal: true
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watcher:
    """Collects script errors and dialogs of a page: both must stay empty."""

    def __init__(self, page: Page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser: Browser, cloudseam_server) -> Iterator[Page]:
    context = browser.new_context(base_url=cloudseam_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE)
    watcher = Watcher(page)
    page.watcher = watcher
    yield page
    context.close()
    assert watcher.errors == [], "script errors on the page"
    assert watcher.dialogs == [], "a dialog opened"


def log_in(page: Page, server) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", server.admin_password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/$"))


@pytest.fixture
def logged_in(page: Page, cloudseam_server) -> Page:
    log_in(page, cloudseam_server)
    return page


def shoot(page: Page, name: str) -> None:
    """Screenshot the page in the light and the dark scheme."""
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def mark_no_reload(page: Page) -> None:
    page.evaluate("window.__noReload = true")


def assert_no_reload(page: Page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def expect_current(page: Page, state: str) -> None:
    """The diagram highlights `state`, and only it."""
    expect(page.locator(f'#diagram g.node[id="state-{state}"]')).to_have_class(re.compile(r"\bcurrent\b"))
    expect(page.locator("#diagram g.node.current")).to_have_count(1)


def line_count(locator) -> int:
    """How many lines the element's text takes on screen."""
    return locator.evaluate("""(el) => {
        const range = document.createRange();
        range.selectNodeContents(el);
        return Math.round(range.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight));
    }""")


def page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def launch(server, stack_id: str, machine: str, **fields) -> dict:
    status, body = server.api("POST", "/api/events", {"stackId": stack_id, "event": "LAUNCH", "machine": machine,
                                                      **fields})
    assert status == 200, body
    return body


# --- the scenarios ------------------------------------------------------------------------------------------


def test_it_logs_in_and_shows_who_is_there(page: Page, cloudseam_server):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    shoot(page, "login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".alert-error")).to_be_visible()
    log_in(page, cloudseam_server)
    expect(page.locator(".site-header .user")).to_have_text("admin")
    expect(page.locator(".site-header .role-badge")).to_have_text("admin")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_it_creates_a_stack_from_the_form_and_follows_it_live(logged_in: Page, cloudseam_server):
    page = logged_in
    stack_id = unique("form")
    page.goto("/stacks/new/")
    page.fill("#id_stack_id", stack_id)
    expect(page.locator("#stack-id-check")).to_contain_text("is free")
    page.select_option("#id_machine", "qa-env")
    page.select_option("#id_event", "LAUNCH")
    page.locator("[data-meta-row] input[name=meta_key]").first.fill("apiImageTag")
    page.locator("[data-meta-row] input[name=meta_value]").first.fill("v1.2.3")
    shoot(page, "new-stack")
    page.click("text=Create stack")
    expect(page).to_have_url(re.compile(rf"/stacks/{stack_id}/$"))
    mark_no_reload(page)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#stack-state")).to_have_text("PROVISION")
    expect_current(page, "PROVISION")
    expect(page.locator("#tasks-table tbody.task")).to_have_count(2)
    expect(page.locator('#diagram g.node[id="state-PROVISION"] text.task-pending').first).to_be_attached()
    expect(page.locator("pre.output").nth(1)).to_contain_text(f"creating database for {stack_id}")
    shoot(page, "stack-provisioning")
    expect(page.locator("#stack-state")).to_have_text("RUN")  # both tasks done: NEXT fired by itself
    expect_current(page, "RUN")
    expect(page.locator("#history")).to_contain_text("TASK_COMPLETED")
    expect(page.locator("#metadata-table")).to_contain_text("v1.2.3")
    assert_no_reload(page)
    shoot(page, "stack-running")


def test_it_never_calls_an_invalid_id_free(logged_in: Page):
    """A lookup for "Bad" (valid) answers after the field became "Bad id!": the answer is dropped."""
    page = logged_in
    page.goto("/stacks/new/")
    check = page.locator("#stack-id-check")
    with page.expect_response(re.compile(r"/api/stacks/Bad$")):
        page.locator("#id_stack_id").press_sequentially("Bad id!")
    page.wait_for_timeout(500)  # time for the page to handle the late answer
    expect(check).to_contain_text("Use 1 to 63 letters")
    expect(check).not_to_contain_text("free")
    expect(page.locator("#id_stack_id")).to_have_attribute("aria-invalid", "")
    page.locator("#id_stack_id").fill(unique("good"))
    expect(check).to_contain_text("is free")


def test_it_fits_a_phone_screen(logged_in: Page, cloudseam_server):
    page = logged_in
    stack_id = unique("phone")
    launch(cloudseam_server, stack_id, "flaky-deploy", metadata={"apiImageTag": "v1.2.3", "healthy": True})
    cloudseam_server.wait_for(stack_id, lambda s: s["state"] == "APPROVAL")
    page.goto(f"/stacks/{stack_id}/")
    page.click("details[data-event=DESTROY] summary")
    expect(page.locator("details[data-event=DESTROY] .confirm-prompt")).to_have_text(f"Type {stack_id} to confirm")
    assert line_count(page.locator("details[data-event=DESTROY] .confirm-prompt")) == 1
    page.set_viewport_size({"width": 390, "height": 844})
    assert page_width(page) == 390
    assert line_count(page.locator("#metadata-table th").filter(has_text="apiImageTag")) == 1  # not "apiImageTa/g"
    instructions = page.locator("tbody.task").filter(has_text="approve").locator(".task-instructions")
    expect(instructions).to_have_text("Check the deployment, then mark this task done.")
    box = instructions.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    shoot(page, "stack-approval-narrow")
    page.goto("/tokens/")
    page.fill("#id_name", "CI deploys for the staging cluster")
    page.click("#new-token button[type=submit]")
    expect(page.locator("#raw-token")).to_be_visible()
    assert page_width(page) == 390
    page.goto("/tokens/")
    expect(page.locator("#tokens tbody th").first).to_be_visible()
    assert page_width(page) == 390  # the table scrolls in its frame; the page does not
    shoot(page, "tokens-narrow")


def test_it_shows_new_and_changed_stacks_on_the_dashboard_live(logged_in: Page, cloudseam_server):
    page = logged_in
    prefix = unique("dash")
    page.goto(f"/?q={prefix}")
    mark_no_reload(page)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    launch(cloudseam_server, f"{prefix}-a", "qa-env")
    row = page.locator(f'tr[data-stack-id="{prefix}-a"]')
    expect(row).to_be_visible()
    expect(row.locator(".state-badge")).to_have_text("PROVISION")
    expect(row.locator(".state-badge")).to_have_text("RUN")
    status, _ = cloudseam_server.api("POST", "/api/events", {"stackId": f"{prefix}-a", "event": "DESTROY"})
    assert status == 200
    expect(row).to_have_count(0)  # removed once its teardown task is done
    assert_no_reload(page)
    page.goto("/")
    shoot(page, "dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "dashboard-narrow")


def test_it_applies_an_event_from_its_button(logged_in: Page, cloudseam_server):
    page = logged_in
    stack_id = unique("button")
    launch(cloudseam_server, stack_id, "qa-env")
    cloudseam_server.wait_for(stack_id, lambda s: s["state"] == "RUN")
    page.goto(f"/stacks/{stack_id}/")
    mark_no_reload(page)
    actions = page.locator("#event-actions")
    expect(actions.locator("[data-event]")).to_have_count(3)  # RUN accepts LAUNCH, FREEZE, DESTROY only
    actions.get_by_role("button", name=re.compile("^FREEZE")).click()
    expect(page.locator("#action-result")).to_contain_text("FREEZE applied")
    expect(page.locator("#stack-state")).to_have_text("FROZEN")
    expect_current(page, "FROZEN")
    expect(actions.locator("[data-event]")).to_have_count(2)  # FROZEN: RESUME, DESTROY
    expect(page.locator("#history .history-event").filter(has_text="FREEZE")).to_have_count(1)
    # DESTROY ends the stack, so it asks for the stack id first.
    actions.locator("details[data-event=DESTROY] summary").click()
    page.fill("details[data-event=DESTROY] input[name=confirm]", "wrong")
    page.click("details[data-event=DESTROY] button[type=submit]")
    expect(page.locator("#action-result")).to_contain_text(f"Type {stack_id} exactly")
    page.fill("details[data-event=DESTROY] input[name=confirm]", stack_id)
    page.click("details[data-event=DESTROY] button[type=submit]")
    expect(page.locator("#removed-banner")).to_be_visible()
    expect(page.locator("#stack-state")).to_have_text("DESTROY")
    assert_no_reload(page)
    page.goto(f"/stacks/{stack_id}/")  # now the archive page of the removed stack
    expect(page).to_have_url(re.compile(r"/stacks/removed/\d+/$"))
    shoot(page, "removed-stack")


def test_it_retries_a_failing_task_after_fixing_metadata_and_completes_an_external_one(logged_in: Page,
                                                                                        cloudseam_server):
    page = logged_in
    stack_id = unique("flaky")
    launch(cloudseam_server, stack_id, "flaky-deploy")
    page.goto(f"/stacks/{stack_id}/")
    mark_no_reload(page)
    health = page.locator("tbody.task").filter(has_text="health-check")
    expect(health.locator(".task-status")).to_have_text("ERROR")
    expect(health.locator(".task-error")).to_contain_text("exit")
    expect(page.locator('#diagram g.node[id="state-DEPLOY"] text.task-error')).to_have_count(1)
    expect(page.locator("#retry-failed")).to_be_visible()
    shoot(page, "stack-failed-task")
    # Fix the cause: healthy = true (a boolean), edited in the metadata table.
    page.click("#metadata-edit summary")
    page.locator("#metadata-form input[name=meta_key]").last.fill("healthy")
    page.locator("#metadata-form input[name=meta_value]").last.fill("true")
    page.click("#metadata-form button[type=submit]")
    expect(page.locator("#metadata-table")).to_contain_text("healthy")
    expect(page.locator("#metadata-table")).to_contain_text("boolean")
    page.click("#retry-failed button")
    expect(page.locator("#stack-state")).to_have_text("APPROVAL")
    expect_current(page, "APPROVAL")
    approve = page.locator("tbody.task").filter(has_text="approve")
    expect(approve.locator(".task-instructions")).to_have_text("Check the deployment, then mark this task done.")
    approve.get_by_role("button", name="Mark done").click()
    expect(page.locator("#stack-state")).to_have_text("LIVE")
    expect(page.locator("#history")).to_contain_text("RETRY_FAILED_TASKS")
    assert_no_reload(page)
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "stack-narrow")


def test_it_refuses_wrong_metadata_and_shows_markup_as_text(logged_in: Page, cloudseam_server):
    page = logged_in
    stack_id = unique("xss")
    launch(cloudseam_server, stack_id, "qa-env", metadata={"owner": "team-a"})
    page.goto(f"/stacks/{stack_id}/")
    mark_no_reload(page)
    page.click("#metadata-edit summary")
    page.locator("#metadata-form input[name=meta_key]").last.fill("nested")
    page.locator("#metadata-form input[name=meta_value]").last.fill('{"a": 1}')
    page.click("#metadata-form button[type=submit]")
    expect(page.locator("#metadata-form .alert-error")).to_contain_text("metadata must be flat")
    expect(page.locator("#metadata-table")).not_to_contain_text("nested")
    # Markup typed in the form ...
    page.locator("#metadata-form input[name=meta_value]").last.fill(XSS)
    page.click("#metadata-form button[type=submit]")
    expect(page.locator("#metadata-table")).to_contain_text(XSS)
    # ... and markup sent through the API while the page watches, drawn by the page script.
    status, _ = cloudseam_server.api("POST", "/api/events", {"stackId": stack_id, "event": "UPDATE_METADATA",
                                                              "metadata": {XSS: XSS, "note": f"</code>{XSS}"}})
    assert status in (200, 409), "UPDATE_METADATA may be refused through the API; the form path is covered"
    cell = page.locator("#metadata-table td code").filter(has_text=XSS).first
    expect(cell).to_have_text(XSS)
    assert page.locator("img[src=x]").count() == 0
    assert_no_reload(page)
    page.reload()
    expect(page.locator("#metadata-table")).to_contain_text(XSS)
    assert page.locator("img[src=x]").count() == 0
    shoot(page, "stack-metadata-escaped")


def test_it_shows_errors_of_an_invalid_machine_in_the_editor(logged_in: Page, cloudseam_server):
    page = logged_in
    page.goto("/machines/new/")
    page.fill("#id_name", unique("broken"))
    page.fill("#id_yaml_text", BROKEN_MACHINE)
    problems = page.locator("#problems")
    expect(problems).to_contain_text("RUNN")
    expect(problems.locator("button[data-line='6']")).to_be_visible()
    expect(page.locator("#editor-gutter span.error")).to_have_text("6")
    expect(page.locator("#validation-status")).to_contain_text("error")
    expect(page.locator("#save-button")).to_be_disabled()
    shoot(page, "editor-invalid")
    page.fill("#id_yaml_text", BROKEN_MACHINE.replace("RUNN", "RUN"))
    expect(page.locator("#validation-status")).to_contain_text("Valid")
    expect(page.locator("#preview svg g.node")).to_have_count(2)
    expect(page.locator("#save-button")).to_be_enabled()
    shoot(page, "editor-valid")
    page.click("#save-button")
    expect(page).to_have_url(re.compile(r"/machines/broken-[0-9a-f]+/$"))
    expect(page.locator(".messages")).to_contain_text("version 1")


def test_it_shows_a_single_spaced_diff_of_two_versions(logged_in: Page, cloudseam_server):
    page = logged_in
    name = unique("diff")
    first = BROKEN_MACHINE.replace("RUNN", "RUN")
    for text in (first, first.replace("events: [LAUNCH]", "events: [LAUNCH, STOP]")):
        status, body = cloudseam_server.api("PUT", f"/api/machines/{name}", raw=text.encode(),
                                            content_type="application/yaml")
        assert status in (200, 201), body
    page.goto(f"/machines/{name}/?a=1&b=2")
    lines = page.locator("pre.diff").inner_text().split("\n")
    assert lines.index("+events: [LAUNCH, STOP]") == lines.index("-events: [LAUNCH]") + 1
    assert "" not in lines[:-1]  # as it is copied, too
    tops = page.locator("pre.diff span").evaluate_all("(spans) => spans.map((s) => s.getBoundingClientRect().top)")
    line_height = page.locator("pre.diff").evaluate("(pre) => parseFloat(getComputedStyle(pre).lineHeight)")
    assert all(abs(b - a - line_height) < 1 for a, b in zip(tops, tops[1:], strict=False)), (tops, line_height)
    shoot(page, "machine-diff")


def vendored(path: str) -> None:
    assert (ROOT / "static" / "vendor" / path).exists(), f"static/vendor/{path} is missing: run make setup"


def test_it_draws_a_machine_with_graphviz_and_mermaid(logged_in: Page, cloudseam_server):
    vendored("mermaid/mermaid.esm.min.mjs")
    page = logged_in
    page.goto("/machines/qa-env/")
    expect(page.locator("#diagram svg g.node")).to_have_count(8)
    shoot(page, "machine-graphviz")
    page.click("button[data-renderer=mermaid]")
    expect(page.locator("#mermaid-diagram svg")).to_be_visible()
    expect(page.locator("#diagram")).to_be_hidden()
    shoot(page, "machine-mermaid")


def test_it_draws_in_the_browser_when_the_server_has_no_graphviz(logged_in: Page):
    """The fallback path: the page's DOT text drawn by @viz-js/viz, with the same node ids."""
    vendored("viz/viz.js")
    page = logged_in
    page.goto("/machines/qa-env/")
    nodes = page.evaluate("""async () => {
        const diagram = await import('/static/js/diagram.js');
        const dot = await (await fetch('/machines/qa-env/export.dot')).text();
        const figure = document.getElementById('diagram');
        figure.replaceChildren();
        const svg = await diagram.drawDot(figure, dot);
        diagram.highlightState(svg, {RUN: 'state-RUN'}, 'RUN');
        return [...figure.querySelectorAll('g.node')].map((g) => g.id + ' ' + g.getAttribute('class'));
    }""")
    assert len(nodes) == 8
    assert "state-RUN node state current" in nodes


def _dashboard_rows(page: Page) -> list[list[str]]:
    return page.evaluate("""() => [...document.querySelectorAll('#stack-rows tr')].map((row) => [
        row.dataset.stackId,
        row.querySelector('[data-col=machine]').textContent.trim(),
        row.querySelector('.state-badge').textContent.trim(),
        row.querySelector('.state-badge').className,
        row.querySelector('[data-col=tasks]').textContent.replace(/\\s+/g, ' ').trim(),
    ])""")


def test_it_resyncs_after_missing_updates_to_what_a_fresh_load_shows(logged_in: Page, cloudseam_server, browser):
    page = logged_in
    prefix = unique("sync")
    for name in ("a", "b", "c"):
        launch(cloudseam_server, f"{prefix}-{name}", "qa-env")
    for name in ("a", "b", "c"):
        cloudseam_server.wait_for(f"{prefix}-{name}", lambda s: s["state"] == "RUN")
    blocked = {"on": False}
    routes = []

    def route(ws) -> None:
        if blocked["on"]:
            ws.close()  # the server is "down": refuse, the page keeps retrying
            return
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(r"/ws/stacks/$"), route)
    page.goto(f"/?q={prefix}")
    mark_no_reload(page)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#stack-rows tr")).to_have_count(3)

    blocked["on"] = True
    routes[-1].close()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    # Missed while disconnected: a new stack, a removed one, one that moved on.
    launch(cloudseam_server, f"{prefix}-d", "qa-env")
    cloudseam_server.api("POST", "/api/events", {"stackId": f"{prefix}-a", "event": "DESTROY"})
    cloudseam_server.api("POST", "/api/events", {"stackId": f"{prefix}-b", "event": "FREEZE"})
    cloudseam_server.wait_for(f"{prefix}-b", lambda s: s["state"] == "FROZEN")
    cloudseam_server.wait_for(f"{prefix}-d", lambda s: s["state"] == "RUN")
    cloudseam_server.wait_for(f"{prefix}-a", lambda s: s["removed"])
    assert page.locator(f'tr[data-stack-id="{prefix}-a"]').count() == 1  # still the old picture

    blocked["on"] = False
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=LIVE * 2)
    expect(page.locator(f'tr[data-stack-id="{prefix}-a"]')).to_have_count(0)
    expect(page.locator(f'tr[data-stack-id="{prefix}-d"]')).to_have_count(1)
    assert_no_reload(page)

    fresh = page.context.new_page()
    fresh.goto(f"/?q={prefix}")
    expect(fresh.locator("#stack-rows tr")).to_have_count(3)
    assert _dashboard_rows(page) == _dashboard_rows(fresh)
    assert page.locator("#stack-count").inner_text() == fresh.locator("#stack-count").inner_text()
    fresh.close()


def test_it_resyncs_a_stack_page_after_missing_updates(logged_in: Page, cloudseam_server):
    page = logged_in
    stack_id = unique("sync1")
    launch(cloudseam_server, stack_id, "qa-env")
    cloudseam_server.wait_for(stack_id, lambda s: s["state"] == "RUN")
    blocked = {"on": False}
    routes = []

    def route(ws) -> None:
        if blocked["on"]:
            ws.close()
            return
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket(re.compile(rf"/ws/stacks/{stack_id}/$"), route)
    page.goto(f"/stacks/{stack_id}/")
    mark_no_reload(page)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    blocked["on"] = True
    routes[-1].close()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    cloudseam_server.api("POST", "/api/events", {"stackId": stack_id, "event": "FREEZE", "metadata": {"why": "night"}})
    cloudseam_server.wait_for(stack_id, lambda s: s["state"] == "FROZEN")
    expect(page.locator("#stack-state")).to_have_text("RUN")  # not seen yet
    blocked["on"] = False
    expect(page.locator("#stack-state")).to_have_text("FROZEN", timeout=LIVE * 2)
    expect_current(page, "FROZEN")
    expect(page.locator("#metadata-table")).to_contain_text("night")
    assert_no_reload(page)

    def picture(p: Page) -> dict:
        return p.evaluate("""() => ({
            state: document.getElementById('stack-state').textContent.trim(),
            previous: document.getElementById('stack-previous').textContent.trim(),
            events: [...document.querySelectorAll('#event-actions [data-event]')].map((e) => e.dataset.event),
            metadata: document.getElementById('metadata-table').innerText,
            history: [...document.querySelectorAll('#history .history-item')].map((li) => li.dataset.eventId),
            current: [...document.querySelectorAll('#diagram g.node.current')].map((g) => g.id),
        })""")

    fresh = page.context.new_page()
    fresh.goto(f"/stacks/{stack_id}/")
    expect(fresh.locator("#connection")).to_have_attribute("data-state", "live")
    assert picture(page) == picture(fresh)
    fresh.close()


def test_it_announces_changes_and_works_from_the_keyboard(logged_in: Page, cloudseam_server):
    """Screen-reader users hear state changes; every action is reachable without a mouse."""
    page = logged_in
    stack_id = unique("keys")
    launch(cloudseam_server, stack_id, "qa-env")
    cloudseam_server.wait_for(stack_id, lambda s: s["state"] == "RUN")
    page.goto(f"/stacks/{stack_id}/")
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
    freeze = page.locator("#event-actions").get_by_role("button", name=re.compile("^FREEZE"))
    for _ in range(60):  # Tab through the page until the FREEZE button has the focus
        if freeze.evaluate("button => button === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("the FREEZE button cannot be reached with the Tab key")
    page.keyboard.press("Enter")
    expect(page.locator("#stack-state")).to_have_text("FROZEN")
    expect(page.locator("#announcer")).to_contain_text(f"{stack_id} is now in FROZEN")


IMPACT_MACHINE = """\
version: 1
events: [LAUNCH, FREEZE, RESUME, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      FREEZE: [{action: advance, state: FROZEN}]
      DESTROY: [{action: advance, state: GONE}]
  FROZEN:
    on:
      RESUME: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
"""


def test_it_foresees_stranded_stacks_in_the_editor_and_moves_the_compatible_ones(logged_in: Page, cloudseam_server):
    page, server = logged_in, cloudseam_server
    name = unique("impact")
    status, body = server.api("PUT", f"/api/machines/{name}", raw=IMPACT_MACHINE.encode(),
                              content_type="application/yaml")
    assert status == 201, body
    running, frozen = unique("run"), [unique("cold"), unique("cold")]
    for key in (running, *frozen):
        launch(server, key, name)
    for key in frozen:
        assert server.api("POST", "/api/events", {"stackId": key, "event": "FREEZE"})[0] == 200
    page.goto(f"/machines/{name}/edit/")
    impact = page.locator("#impact")
    # FROZEN stays but no longer accepts RESUME: its stacks are marked on the diagram as stranded.
    page.fill("#id_yaml_text", IMPACT_MACHINE.replace("      RESUME: [{action: advance, state: RUN}]\n", ""))
    expect(impact).to_contain_text("would leave 2 stacks stranded (FROZEN no longer handles RESUME")
    frozen_node = page.locator('#preview g.node[id="state-FROZEN"]')
    expect(frozen_node).to_have_class(re.compile(r"\bstrands\b"))
    expect(frozen_node.locator("text.stack-count")).to_have_text("2 stacks, 2 stranded")
    expect(page.locator('#preview g.node[id="state-RUN"] text.stack-count')).to_have_text("1 stack")
    # FROZEN deleted: the stacks in it are named before anything is saved.
    without_frozen = IMPACT_MACHINE.replace("FREEZE: [{action: advance, state: FROZEN}]", "FREEZE: [{action: no-op}]")
    without_frozen = without_frozen[:without_frozen.index("  FROZEN:")] + "  GONE:\n    terminal: true\n"
    page.fill("#id_yaml_text", without_frozen)
    expect(impact).to_contain_text(f"This version would leave 2 stacks stranded (FROZEN no longer exists: "
                                   f"{', '.join(sorted(frozen))}) and let 1 move up")
    expect(page.locator('#preview g.node[id="state-FROZEN"]')).to_have_count(0)
    impact.locator("summary").click()  # why: one line per group of stacks stranded for the same reasons
    group = impact.locator(".impact-stacks li")
    expect(group).to_have_count(1)
    expect(group).to_contain_text("FROZEN, 2 stacks: state FROZEN does not exist in this version")
    expect(group.locator(".impact-ids")).to_have_text(", ".join(f"{key} (v1)" for key in sorted(frozen)))
    shoot(page, "editor-impact")
    # A compatible change: saved, then every stack moves to it from the machine page in one click.
    page.fill("#id_yaml_text", IMPACT_MACHINE.replace("DESTROY]", "DESTROY, PAUSE]"))
    expect(impact).to_contain_text("This version would let all 3 active stacks move up")
    page.click("#save-button")
    expect(page).to_have_url(re.compile(rf"/machines/{name}/$"))
    form = page.locator("#move-stacks-form")
    expect(form.locator("button")).to_have_text("Move all 3 compatible stacks to version 2")
    form.locator("input[name=confirm]").fill("3")
    form.locator("button").click()
    expect(page.locator("#move-report")).to_contain_text("Moved 3 stacks to version 2")
    shoot(page, "moved-stacks")
    for key in (running, *frozen):
        assert server.api("GET", f"/api/stacks/{key}")[1]["machineVersion"] == 2
