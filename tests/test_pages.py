"""The browser pages, through Django's test client: every page for every role, and every action.

Roles are Django groups (created by a migration); a viewer sees everything and can change nothing,
an operator acts on stacks, an admin also edits machines. Actions are plain form posts here, as a
browser without JavaScript sends them; the page scripts send the same forms asking for JSON.
"""

from __future__ import annotations

import html as html_text
import json
import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from machines_app import diagrams
from machines_app.models import Machine
from machines_app.services import save_machine
from stacks import services
from stacks.models import Stack, StackEvent
from tests.fixtures_roles import form_data

pytestmark = pytest.mark.django_db

SHOP = """\
version: 1
events: [LAUNCH, PING, PAUSE, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  RUN:
    on:
      PING: [{action: no-op}]
      PAUSE: [{action: advance, state: WAIT}]
      DESTROY: [{action: advance, state: GONE}]
  WAIT:
    tasks: [approve, check]
    on:
      NEXT: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  approve:
    executor: external
    config:
      instructions: "Check the shop & <b>sign</b> off, then mark this task done."
  check:
    executor: external
"""

SHOP_V2 = SHOP.replace("events: [LAUNCH, PING, PAUSE, DESTROY]", "events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]")

XSS = "<img src=x onerror=alert(1)>"
OTHER = SHOP.replace("tasks:\n  approve:", "tasks:\n  approve2:").replace("[approve, check]", "[approve2, check]")


def _user(name: str, group: str | None) -> User:
    user = User.objects.create_user(name, password="a long test password")
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_viewer() -> Client:
    return _client(_user("vera", "viewer"))


@pytest.fixture
def as_operator() -> Client:
    return _client(_user("otto", "operator"))


@pytest.fixture
def as_admin() -> Client:
    return _client(_user("ada", "admin"))


@pytest.fixture
def shop() -> Machine:
    return save_machine("shop", SHOP, actor="test", source="test").version.machine


def launch(stack_id: str = "feature-1", event: str = "LAUNCH", **fields) -> Stack:
    result = services.send(stack_id, event, machine="shop", actor="test", source="test", **fields)
    assert result.ok, result.body
    return Stack.objects.active().get(key=stack_id)


def waiting_stack(stack_id: str = "feature-1") -> Stack:
    """A stack in WAIT, whose two external tasks are pending."""
    launch(stack_id)
    assert services.send(stack_id, "PAUSE", actor="test", source="test").ok
    return Stack.objects.active().get(key=stack_id)


def removed_stack(stack_id: str = "old-1") -> Stack:
    launch(stack_id)
    assert services.send(stack_id, "DESTROY", actor="test", source="test").ok
    return Stack.objects.removed().get(key=stack_id)


def page_urls(stack: Stack, gone: Stack) -> list[str]:
    return [
        reverse("stacks-dashboard"),
        reverse("stacks-dashboard") + "?format=json",
        reverse("stacks-detail", args=[stack.key]),
        reverse("stacks-output", args=[stack.key]),
        reverse("stacks-removed"),
        reverse("stacks-removed-detail", args=[gone.pk]),
        reverse("machines-list"),
        reverse("machines-detail", args=["shop"]),
        reverse("machines-export", args=["shop", "dot"]),
        reverse("machines-export", args=["shop", "mermaid"]),
    ]


# --- anonymous and permissions ------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_the_login_page(client, shop):
    stack, gone = launch(), removed_stack()
    forms = [reverse("stacks-new"), reverse("machines-new"), reverse("machines-edit", args=["shop"])]
    urls = page_urls(stack, gone) + forms
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_it_refuses_every_page_to_a_user_without_a_role(shop):
    stack, gone = launch(), removed_stack()
    nobody = _client(_user("nora", None))
    forms = [reverse("stacks-new"), reverse("machines-new"), reverse("machines-edit", args=["shop"]),
             reverse("machines-export", args=["shop", "svg"])]
    for url in page_urls(stack, gone) + forms:
        response = nobody.get(url)
        assert response.status_code == 403, url
        assert b"Not allowed" in response.content, url  # the 403 page, as for any missing role


def test_it_refuses_anonymous_posts_without_changing_anything(client, shop):
    stack = launch()
    response = client.post(reverse("stacks-event", args=[stack.key]), {"event": "PAUSE"})
    assert response.status_code == 302
    assert Stack.objects.get(pk=stack.pk).state == "RUN"


def test_it_shows_the_login_page(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_it_logs_in_and_lands_on_the_dashboard(client):
    _user("vera", "viewer")
    response = client.post(reverse("login"), {"username": "vera", "password": "a long test password"}, follow=True)
    assert response.status_code == 200
    assert response.resolver_match.url_name == "stacks-dashboard"
    assert b"vera" in response.content and b"viewer" in response.content


def test_it_lets_a_viewer_see_every_page(as_viewer, shop):
    stack, gone = launch(), removed_stack()
    for url in page_urls(stack, gone):
        assert as_viewer.get(url).status_code == 200, url


def test_it_shows_a_viewer_no_action_buttons(as_viewer, shop):
    stack = waiting_stack()
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert "/event/" not in html and "/retry/" not in html and "/metadata/" not in html and "/task/" not in html
    assert "Mark done" not in html and "Edit metadata" not in html
    dashboard = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert reverse("stacks-new") not in dashboard
    machine = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert reverse("machines-edit", args=["shop"]) not in machine


def test_it_refuses_every_viewer_post_with_403(as_viewer, shop):
    stack = waiting_stack()
    posts = {
        "stacks-event": {"event": "DESTROY", "confirm": stack.key},
        "stacks-retry": {"which": "pending"},
        "stacks-task": {"task": "approve", "outcome": "done"},
        "stacks-metadata": {"meta_original": [""], "meta_key": ["a"], "meta_value": ["1"]},
        "stacks-upgrade": {},
    }
    for name, data in posts.items():
        assert as_viewer.post(reverse(name, args=[stack.key]), data).status_code == 403, name
    assert as_viewer.get(reverse("stacks-new")).status_code == 403
    new_stack = {"stack_id": "x1", "machine": "shop", "event": "LAUNCH"}
    assert as_viewer.post(reverse("stacks-new"), new_stack).status_code == 403
    assert as_viewer.get(reverse("machines-new")).status_code == 403
    assert as_viewer.post(reverse("machines-preview"), SHOP, content_type="application/yaml").status_code == 403
    stack.refresh_from_db()
    assert (stack.state, stack.metadata, Stack.objects.count()) == ("WAIT", {}, 1)


def test_it_shows_the_403_page_with_the_role(as_viewer, shop):
    response = as_viewer.get(reverse("machines-new"))
    assert response.status_code == 403
    assert b"Not allowed" in response.content and b"viewer" in response.content


def test_it_keeps_the_machine_editor_for_admins(as_operator, as_admin, shop):
    assert as_operator.get(reverse("machines-new")).status_code == 403
    assert as_operator.get(reverse("machines-edit", args=["shop"])).status_code == 403
    assert as_admin.get(reverse("machines-new")).status_code == 200
    assert as_admin.get(reverse("machines-edit", args=["shop"])).status_code == 200


def test_it_links_to_the_admin_for_staff_users_whatever_their_role(shop):
    admin_link = f'href="{reverse("admin:index")}"'
    for name, group, staff in (("vera", "viewer", True), ("otto", "operator", True), ("ada", "admin", False)):
        user = _user(name, group)
        user.is_staff = staff
        user.save()
        html = _client(user).get(reverse("stacks-dashboard")).content.decode()
        assert (admin_link in html) == staff, name


def test_it_shows_who_is_logged_in_and_their_role(as_operator, shop):
    html = as_operator.get(reverse("stacks-dashboard")).content.decode()
    assert "otto" in html and "role-operator" in html


# --- dashboard ---------------------------------------------------------------------------------------------


def test_it_lists_active_stacks_with_progress_and_not_removed_ones(as_viewer, shop):
    waiting_stack("feature-1")
    launch("feature-2")
    removed_stack("old-1")
    html = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert 'data-stack-id="feature-1"' in html and 'data-stack-id="feature-2"' in html
    assert 'data-stack-id="old-1"' not in html
    assert "0/2" in html  # WAIT's two tasks, none done
    assert "Showing 1–2 of 2 active stacks" in html


def test_it_searches_filters_and_sorts_on_the_server(as_viewer, shop):
    for key in ("alpha", "beta", "feature-9", "feature-10"):
        launch(key)
    waiting_stack("feature-w")
    ids = lambda response: [s["id"] for s in response.json()["stacks"]]  # noqa: E731
    url = reverse("stacks-dashboard")
    assert ids(as_viewer.get(url, {"q": "FEATURE", "format": "json"})) == ["feature-10", "feature-9", "feature-w"]
    assert ids(as_viewer.get(url, {"state": "WAIT", "format": "json"})) == ["feature-w"]
    assert ids(as_viewer.get(url, {"machine": "nope", "format": "json"})) == []
    assert ids(as_viewer.get(url, {"sort": "-id", "format": "json"}))[0] == "feature-w"
    html = as_viewer.get(url, {"state": "WAIT"}).content.decode()
    assert 'data-stack-id="feature-w"' in html and 'data-stack-id="alpha"' not in html


def test_it_paginates_the_dashboard(as_viewer, shop):
    for i in range(55):
        launch(f"s{i:03d}")
    first = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert first.count("data-stack-id=") == 50 + 1  # 50 rows, plus the row template for live updates
    assert "Page 1 of 2" in first
    second = as_viewer.get(reverse("stacks-dashboard"), {"page": 2, "format": "json"}).json()
    assert (second["count"], second["page"], second["pages"], len(second["stacks"])) == (55, 2, 2, 5)


def test_it_ignores_a_bad_sort_or_page_value(as_viewer, shop):
    launch()
    response = as_viewer.get(reverse("stacks-dashboard"), {"sort": "password", "page": "x"})
    assert response.status_code == 200 and b"feature-1" in response.content


# --- stack page ------------------------------------------------------------------------------------------


def test_it_shows_a_stack_with_diagram_tasks_history_and_metadata(as_viewer, shop):
    stack = waiting_stack()
    services.update_metadata(stack.key, {"owner": "team-a", "replicas": 3}, actor="test", source="test")
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert 'id="stack-state"' in html and ">WAIT<" in html
    assert "approve" in html and "check" in html and "PENDING" in html
    assert "PAUSE" in html and "LAUNCH" in html  # history
    assert "owner" in html and "team-a" in html and "number" in html
    if diagrams.dot_available():
        assert 'id="state&#45;WAIT" class="node state current visited"' in html
    else:
        assert 'id="diagram-dot"' in html


def test_it_offers_one_button_per_accepted_event_only(as_operator, shop):
    stack = launch()  # RUN accepts PING, PAUSE, DESTROY
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    main = html.split('<template id="tpl-event">')[0]
    assert 'data-event="PING"' in main and 'data-event="PAUSE"' in main and 'data-event="DESTROY"' in main
    assert 'data-event="LAUNCH"' not in main


def test_it_asks_to_type_the_stack_id_for_events_that_end_the_stack(as_operator, shop):
    stack = launch()
    url = reverse("stacks-event", args=[stack.key])
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode().split("<template")[0]
    assert 'data-confirm="feature-1"' in html
    assert '<span class="confirm-prompt">Type <strong>feature-1</strong> to confirm</span>' in html  # one flex item
    refused = as_operator.post(url, {"event": "DESTROY", "confirm": "feature"})
    assert refused.status_code == 400
    assert b"type the stack id to confirm" in refused.content
    assert Stack.objects.active().filter(key=stack.key).exists()
    done = as_operator.post(url, {"event": "DESTROY", "confirm": "feature-1"})
    assert done.status_code == 302
    assert not Stack.objects.active().filter(key=stack.key).exists()
    assert as_operator.get(reverse("stacks-detail", args=[stack.key])).status_code == 302  # to its archive page


def test_it_applies_an_event_from_its_button(as_operator, shop):
    stack = launch()
    response = as_operator.post(reverse("stacks-event", args=[stack.key]), {"event": "PAUSE"}, follow=True)
    assert response.status_code == 200
    assert "PAUSE applied: RUN → WAIT" in response.content.decode()
    stack.refresh_from_db()
    assert stack.state == "WAIT"
    event = StackEvent.objects.filter(stack=stack).first()
    assert (event.event, event.source, event.actor, event.outcome) == ("PAUSE", "ui", "otto", "applied")


def test_it_shows_a_rejected_event_inline_and_records_it(as_operator, shop):
    stack = launch()
    response = as_operator.post(reverse("stacks-event", args=[stack.key]), {"event": "LAUNCH"})
    assert response.status_code == 409
    html = response.content.decode()
    assert 'role="alert"' in html and "not accepted" in html
    assert StackEvent.objects.filter(stack=stack, event="LAUNCH", outcome="rejected").exists()


def test_it_answers_scripts_with_json(as_operator, shop):
    stack = launch()
    url = reverse("stacks-event", args=[stack.key])
    ok = as_operator.post(url, {"event": "PING"}, headers={"Accept": "application/json"})
    assert ok.status_code == 200 and ok.json()["ok"] is True
    refused = as_operator.post(url, {"event": "LAUNCH"}, headers={"Accept": "application/json"})
    assert refused.status_code == 409 and "not accepted" in refused.json()["error"]


def test_it_retries_failed_and_pending_tasks(as_operator, shop):
    stack = waiting_stack()
    services.send(stack.key, "TASK_ERROR", task={"name": "approve"}, description="nope", actor="t", source="t")
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert 'id="retry-failed"' in html and 'id="retry-failed" hidden' not in html
    response = as_operator.post(reverse("stacks-retry", args=[stack.key]), {"which": "failed"})
    assert response.status_code == 302
    assert sorted(t.status for t in stack.current_tasks()) == ["PENDING", "PENDING"]
    again = as_operator.post(reverse("stacks-retry", args=[stack.key]), {"which": "failed"})
    assert again.status_code == 409  # nothing failed any more: said inline, not a crash
    assert as_operator.post(reverse("stacks-retry", args=[stack.key]), {"which": "pending"}).status_code == 302


def test_it_marks_external_tasks_done_or_failed_with_a_reason(as_operator, shop):
    stack = waiting_stack()
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode().split("<template")[0]
    assert html.count("Mark done") == 2
    url = reverse("stacks-task", args=[stack.key])
    no_reason = as_operator.post(url, {"task": "check", "outcome": "failed", "reason": ""})
    assert no_reason.status_code == 400 and b"say why the task failed" in no_reason.content
    assert as_operator.post(url, {"task": "check", "outcome": "failed", "reason": "disk full"}).status_code == 302
    statuses = {t.name: (t.status, t.error_message) for t in stack.current_tasks()}
    assert statuses["check"] == ("ERROR", "disk full")
    as_operator.post(reverse("stacks-retry", args=[stack.key]), {"which": "failed"})
    as_operator.post(url, {"task": "check", "outcome": "done"})
    as_operator.post(url, {"task": "approve", "outcome": "done"})
    stack.refresh_from_db()
    assert stack.state == "RUN"  # both done: NEXT fired


def _task_body(html: str, name: str) -> str:
    start = html.index(f'<span class="task-name">{name}</span>')
    return html[start:html.index("</tbody>", start)]


def test_it_shows_an_external_tasks_instructions_by_its_buttons_as_text(as_operator, shop):
    stack = waiting_stack()
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode().split("<template")[0]
    approve, check = _task_body(html, "approve"), _task_body(html, "check")
    actions = approve[approve.index("data-task-actions"):]
    expected = "Check the shop &amp; &lt;b&gt;sign&lt;/b&gt; off, then mark this task done."
    assert f'<p class="task-instructions">{expected}</p>' in actions
    assert actions.index(expected) < actions.index("Mark done")
    assert "<b>sign</b>" not in html
    assert "task-instructions" not in check  # no instructions in its config


def test_it_names_the_task_of_a_history_entry_without_prefixes(as_operator, shop):
    stack = waiting_stack()
    as_operator.post(reverse("stacks-task", args=[stack.key]), {"task": "approve", "outcome": "done"})
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    history = html[html.index('id="history"'):]
    assert "via ui · task approve</div>" in history
    assert "name:" not in history and "id:" not in history


def test_it_upgrades_a_stack_to_the_newest_machine_version(as_operator, shop):
    stack = launch()
    save_machine("shop", SHOP_V2, actor="test", source="test")
    html = as_operator.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert "Use version 2 of shop" in html
    assert as_operator.post(reverse("stacks-upgrade", args=[stack.key])).status_code == 302
    stack.refresh_from_db()
    assert stack.machine_version.number == 2


def test_it_gives_404_for_unknown_stacks(as_viewer, as_operator):
    assert as_viewer.get(reverse("stacks-detail", args=["nothing-here"])).status_code == 404
    assert as_operator.post(reverse("stacks-event", args=["nothing-here"]), {"event": "PING"}).status_code == 404


def test_it_serves_the_output_tails_of_current_tasks(as_viewer, shop):
    stack = waiting_stack()
    stack.current_tasks().filter(name="approve").update(output_tail="line 1\nline 2")
    outputs = as_viewer.get(reverse("stacks-output", args=[stack.key])).json()["outputs"]
    assert sorted(outputs.values()) == ["", "line 1\nline 2"]


# --- metadata --------------------------------------------------------------------------------------------


def _meta_post(client: Client, stack: Stack, rows: list[tuple[str, str, str]], **extra):
    """Post rows as the page does, with the metadata it showed: `stack` as the caller loaded it."""
    data = {
        "meta_shown": json.dumps(stack.metadata),
        "meta_original": [r[0] for r in rows],
        "meta_key": [r[1] for r in rows],
        "meta_value": [r[2] for r in rows],
    }
    return client.post(reverse("stacks-metadata", args=[stack.key]), data, **extra)


def test_it_saves_metadata_with_json_looking_values_typed(as_operator, shop):
    stack = launch(metadata={"owner": "team-a", "old": "x"})
    rows = [("owner", "owner", "team-b"), ("old", "", "x"), ("", "healthy", "true"), ("", "replicas", "3"),
            ("", "tag", '"42"'), ("", "version", "1.2.3"), ("", "", "")]
    response = _meta_post(as_operator, stack, rows)
    assert response.status_code == 302
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "team-b", "healthy": True, "replicas": 3, "tag": "42", "version": "1.2.3"}
    event = StackEvent.objects.filter(stack=stack).first()
    assert (event.event, event.actor) == ("UPDATE_METADATA", "otto")


def test_it_renames_a_metadata_key(as_operator, shop):
    stack = launch(metadata={"owner": "team-a"})
    assert _meta_post(as_operator, stack, [("owner", "team", "team-a")]).status_code == 302
    stack.refresh_from_db()
    assert stack.metadata == {"team": "team-a"}


def test_it_refuses_non_flat_metadata_and_saves_nothing(as_operator, shop):
    stack = launch(metadata={"owner": "team-a"})
    response = _meta_post(as_operator, stack, [("owner", "owner", "team-b"), ("", "nested", '{"a": 1}')])
    assert response.status_code == 400
    html = response.content.decode()
    assert "metadata must be flat" in html and "nested" in html
    assert 'id="metadata-edit" open' in html  # the form stays open with what was typed
    assert "team-b" in html
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "team-a"}


def test_it_marks_the_wrong_metadata_row(as_operator, shop):
    stack = launch()
    response = _meta_post(as_operator, stack, [("", "a", "1"), ("", "a", "2"), ("", "", "orphan"), ("", "b", "{oops")])
    assert response.status_code == 400
    html = response.content.decode()
    assert "is used twice" in html and "give this value a name" in html and "looks like JSON but is not valid" in html
    stack.refresh_from_db()
    assert stack.metadata == {}
    as_json = _meta_post(as_operator, stack, [("", "a", "[1]")], headers={"Accept": "application/json"})
    assert as_json.status_code == 400 and "flat" in as_json.json()["error"]


def _metadata_fields(html: str) -> dict[str, list[str]]:
    """The metadata form in a page, as a browser would post it untouched."""
    return {name: value if isinstance(value, list) else [value]
            for name, value in form_data(html, "metadata-form").items()}


def _metadata_form(client: Client, stack: Stack) -> dict[str, list[str]]:
    return _metadata_fields(client.get(reverse("stacks-detail", args=[stack.key])).content.decode())


def _set_row(form: dict[str, list[str]], key: str, new_key: str, value: str) -> None:
    row = form["meta_key"].index(key)  # "" finds the first blank row
    form["meta_key"][row], form["meta_value"][row] = new_key, value


def test_it_keeps_a_change_made_elsewhere_while_the_page_was_open(as_operator, shop):
    stack = launch(metadata={"owner": "alice"})
    form = _metadata_form(as_operator, stack)
    assert services.update_metadata(stack.key, {"owner": "bob"}, actor="api-user", source="api").ok
    _set_row(form, "", "ticket", "OPS-42")
    response = as_operator.post(reverse("stacks-metadata", args=[stack.key]), form)
    assert response.status_code == 302
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "bob", "ticket": "OPS-42"}
    event = StackEvent.objects.filter(stack=stack).first()
    assert (event.event, event.metadata) == ("UPDATE_METADATA", {"ticket": "OPS-42"})  # only what changed here


def test_it_removes_a_row_the_page_showed_and_keeps_keys_added_since(as_operator, shop):
    stack = launch(metadata={"owner": "alice", "env": "staging"})
    form = _metadata_form(as_operator, stack)
    assert services.update_metadata(stack.key, {"region": "eu"}, actor="api-user", source="api").ok
    _set_row(form, "env", "", "")  # what the Remove button does
    assert as_operator.post(reverse("stacks-metadata", args=[stack.key]), form).status_code == 302
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "alice", "region": "eu"}


def test_it_saves_nothing_when_no_row_was_changed(as_operator, shop):
    stack = launch(metadata={"owner": "alice", "replicas": 3, "ratio": 1.0, "healthy": True})
    form = _metadata_form(as_operator, stack)
    assert services.update_metadata(stack.key, {"owner": "bob"}, actor="api-user", source="api").ok
    response = as_operator.post(reverse("stacks-metadata", args=[stack.key]), form, follow=True)
    assert "Metadata unchanged" in response.content.decode()
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "bob", "replicas": 3, "ratio": 1.0, "healthy": True}
    assert StackEvent.objects.filter(stack=stack, event="UPDATE_METADATA", actor="otto").count() == 0


def test_it_keeps_what_was_shown_when_the_form_comes_back_with_an_error(as_operator, shop):
    stack = launch(metadata={"owner": "alice"})
    form = _metadata_form(as_operator, stack)
    assert services.update_metadata(stack.key, {"owner": "bob"}, actor="api-user", source="api").ok
    _set_row(form, "", "nested", '{"a": 1}')
    refused = as_operator.post(reverse("stacks-metadata", args=[stack.key]), form)
    assert refused.status_code == 400
    again = _metadata_fields(refused.content.decode())
    assert json.loads(again["meta_shown"][0]) == {"owner": "alice"}  # what the person saw, not the database
    _set_row(again, "nested", "ticket", "OPS-42")
    assert as_operator.post(reverse("stacks-metadata", args=[stack.key]), again).status_code == 302
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "bob", "ticket": "OPS-42"}


def test_it_refuses_rows_that_do_not_say_what_they_showed(as_operator, shop):
    stack = launch(metadata={"owner": "alice", "env": "staging"})
    data = {"meta_original": ["owner", "env"], "meta_key": ["owner", ""], "meta_value": ["carol", ""]}
    response = as_operator.post(reverse("stacks-metadata", args=[stack.key]), data)
    assert response.status_code == 400 and b"reload the page" in response.content
    for hostile in ("[" * 200_000, "{" * 50):  # too deep to parse, or not JSON at all: the same answer
        response = as_operator.post(reverse("stacks-metadata", args=[stack.key]), {**data, "meta_shown": hostile})
        assert response.status_code == 400 and b"reload the page" in response.content
    stack.refresh_from_db()
    assert stack.metadata == {"owner": "alice", "env": "staging"}


def test_it_escapes_markup_in_metadata(as_viewer, as_operator, shop):
    stack = launch()
    assert _meta_post(as_operator, stack, [("", "note", XSS), ("", XSS, "key too")]).status_code == 302
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    dashboard = as_viewer.get(reverse("stacks-dashboard")).content.decode()
    assert XSS not in dashboard


def test_it_escapes_markup_in_errors_and_task_output(as_viewer, shop):
    stack = waiting_stack()
    services.send(stack.key, "TASK_ERROR", task={"name": "approve"}, description=XSS, actor="t", source="t")
    stack.current_tasks().filter(name="check").update(output_tail=f"</pre>{XSS}")
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert XSS not in html and "&lt;/pre&gt;&lt;img" in html


# --- new stack -------------------------------------------------------------------------------------------


def test_it_creates_a_stack_from_the_form(as_operator, shop):
    page = as_operator.get(reverse("stacks-new"), {"machine": "shop"}).content.decode()
    assert '<optgroup label="shop"' in page and '<option value="LAUNCH"' in page and '<option value="PING"' not in page
    data = {"stack_id": "feature-7", "machine": "shop", "event": "LAUNCH",
            "meta_original": ["", ""], "meta_key": ["owner", ""], "meta_value": ["me", ""]}
    response = as_operator.post(reverse("stacks-new"), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("stacks-detail", args=["feature-7"])
    stack = Stack.objects.active().get(key="feature-7")
    assert (stack.state, stack.metadata) == ("RUN", {"owner": "me"})


def _selected_machine(page: str) -> list[str]:
    select = page[page.index('<select name="machine"'):]
    return re.findall(r'<option value="([^"]+)" selected>', select[:select.index("</select>")])


def test_it_preselects_the_machine_most_active_stacks_use(as_operator, shop):
    save_machine("other", OTHER, actor="test", source="test")
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["other"]  # none used: first
    launch("s1")
    for key in ("o1", "o2"):
        assert services.send(key, "LAUNCH", machine="other", actor="test", source="test").ok
    removed_stack("gone-1")
    removed_stack("gone-2")  # removed stacks do not count
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["other"]
    launch("s2")
    launch("s3")
    assert _selected_machine(as_operator.get(reverse("stacks-new")).content.decode()) == ["shop"]
    asked = as_operator.get(reverse("stacks-new"), {"machine": "other"}).content.decode()
    assert _selected_machine(asked) == ["other"]
    unknown = as_operator.get(reverse("stacks-new"), {"machine": "nope"}).content.decode()
    assert _selected_machine(unknown) == ["shop"]


def test_it_refuses_a_taken_id_a_bad_id_and_a_wrong_first_event(as_operator, shop):
    launch("taken")
    cases = [
        ({"stack_id": "taken", "event": "LAUNCH"}, "already exists"),
        ({"stack_id": "bad id!", "event": "LAUNCH"}, "starting with a letter or digit"),
        ({"stack_id": "fresh", "event": "PING"}, "accepts only: LAUNCH, DESTROY"),
    ]
    for fields, message in cases:
        response = as_operator.post(reverse("stacks-new"), {"machine": "shop", **fields})
        assert response.status_code == 400, fields
        assert message in response.content.decode(), fields
    assert Stack.objects.count() == 1


def test_it_refuses_bad_metadata_on_a_new_stack(as_operator, shop):
    data = {"stack_id": "fresh", "machine": "shop", "event": "LAUNCH",
            "meta_original": [""], "meta_key": ["x"], "meta_value": ["[1, 2]"]}
    response = as_operator.post(reverse("stacks-new"), data)
    assert response.status_code == 400 and b"metadata must be flat" in response.content
    assert not Stack.objects.filter(key="fresh").exists()


# --- tokens ----------------------------------------------------------------------------------------------


def test_it_lays_out_the_tokens_page_like_the_other_pages(as_operator):
    page = as_operator.get(reverse("tokens-list")).content.decode()
    assert '<div class="table-wrap">\n  <table class="data-table tokens-table" id="tokens">' in page  # scrolls alone
    form = page[page.index('id="new-token"'):page.index("</form>", page.index('id="new-token"'))]
    assert 'class="stacked-form"' in form and "<p><label" not in form  # fields, not as_p
    assert form.count('<div class="field">') == 3
    assert 'aria-describedby="id_name_helptext"' in form and '<p class="help" id="id_name_helptext">' in form
    refused = as_operator.post(reverse("tokens-create"), {"name": "", "role": "operator", "expires": "7"})
    assert refused.status_code == 400
    assert '<p class="field-error">This field is required.</p>' in refused.content.decode()


# --- removed stacks ----------------------------------------------------------------------------------------


def test_it_lists_and_searches_removed_stacks_and_keeps_their_history(as_viewer, shop):
    gone = removed_stack("old-1")
    removed_stack("other-2")
    launch("old-1")  # the id is free again
    listing = as_viewer.get(reverse("stacks-removed"), {"q": "old"}).content.decode()
    assert reverse("stacks-removed-detail", args=[gone.pk]) in listing and "other-2" not in listing
    page = as_viewer.get(reverse("stacks-removed-detail", args=[gone.pk])).content.decode()
    assert "DESTROY" in page and "LAUNCH" in page and "GONE" in page
    assert "/event/" not in page
    active = Stack.objects.active().get(key="old-1")
    assert as_viewer.get(reverse("stacks-removed-detail", args=[active.pk])).status_code == 404


# --- machines --------------------------------------------------------------------------------------------


def test_it_lists_machines_with_their_stacks(as_viewer, shop):
    launch()
    html = as_viewer.get(reverse("machines-list")).content.decode()
    assert reverse("machines-detail", args=["shop"]) in html and "v1" in html


def test_it_shows_a_machine_with_diagrams_yaml_versions_and_warnings(as_viewer, shop):
    launch("on-v1")
    save_machine("shop", SHOP_V2, actor="ada", source="editor")
    html = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert 'id="mermaid-source"' in html and "flowchart LR" in html
    assert 'id="L1"' in html and "version: 1" in html
    assert "v2" in html and "v1" in html and "on-v1" in html
    assert "EXTRA" in html and "Warnings" in html  # declared but never handled
    assert "terminal state" in html  # the legend, with only what a machine page can show (issue #8)
    assert "current state" not in html and "task PENDING" not in html and "visited state" not in html
    if diagrams.dot_available():
        assert "<svg" in html


def test_it_shows_an_older_version_and_a_diff(as_viewer, shop):
    save_machine("shop", SHOP_V2, actor="ada", source="editor")
    old = as_viewer.get(reverse("machines-detail", args=["shop"]), {"version": 1}).content.decode()
    assert "older version" in old
    diff = as_viewer.get(reverse("machines-detail", args=["shop"]), {"a": 2, "b": 1}).content.decode()
    assert "Changes from v1 to v2" in diff
    assert 'class="diff-add">+events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]' in diff
    lines = _diff_lines(diff)
    removed, added = "-events: [LAUNCH, PING, PAUSE, DESTROY]", "+events: [LAUNCH, PING, PAUSE, DESTROY, EXTRA]"
    assert lines.index(added) == lines.index(removed) + 1  # single-spaced: no blank line between them
    assert "" not in lines and lines[:2] == ["--- version 1", "+++ version 2"]
    assert as_viewer.get(reverse("machines-detail", args=["shop"]), {"version": 9}).status_code == 404


def _diff_lines(page: str) -> list[str]:
    """The lines of the diff's <pre> as text: one span per line, each followed by its newline."""
    start = page.index('<pre class="diff">') + len('<pre class="diff">')
    pre = page[start:page.index("</pre>", start)]
    assert re.fullmatch(r'(<span class="diff-\w+">[^<\n]*</span>\n)+', pre)  # no other text, no newline inside
    text = html_text.unescape(re.sub(r"<[^>]+>", "", pre))
    return text[:-1].split("\n")


def test_it_exports_the_diagram(as_viewer, shop):
    dot = as_viewer.get(reverse("machines-export", args=["shop", "dot"]))
    assert dot.status_code == 200 and b"digraph" in dot.content
    assert 'filename="shop-v1.dot"' in dot["Content-Disposition"]
    mermaid = as_viewer.get(reverse("machines-export", args=["shop", "mermaid"]))
    assert mermaid.content.startswith(b"flowchart LR")
    svg = as_viewer.get(reverse("machines-export", args=["shop", "svg"]))
    if diagrams.dot_available():
        assert svg.status_code == 200 and b"<svg" in svg.content and svg["Content-Type"] == "image/svg+xml"
    else:
        assert svg.status_code == 503
    assert as_viewer.get("/machines/shop/export.exe").status_code == 404


def test_it_sends_dot_to_the_browser_when_graphviz_is_missing(as_viewer, as_admin, shop, monkeypatch):
    monkeypatch.setattr(diagrams, "dot_available", lambda: False)
    stack = launch()
    html = as_viewer.get(reverse("stacks-detail", args=[stack.key])).content.decode()
    assert 'id="diagram-dot"' in html and "<svg" not in html and "vendor/viz/viz.js" in html
    machine = as_viewer.get(reverse("machines-detail", args=["shop"])).content.decode()
    assert 'id="diagram-dot"' in machine and "digraph" in machine
    assert as_viewer.get(reverse("machines-export", args=["shop", "svg"])).status_code == 503
    preview = as_admin.post(reverse("machines-preview"), SHOP, content_type="application/yaml").json()
    assert preview["svg"] is None and preview["dot"].startswith("digraph")


# --- machine editor --------------------------------------------------------------------------------------


def test_it_saves_a_new_machine_from_the_editor(as_admin):
    page = as_admin.get(reverse("machines-new")).content.decode()
    assert 'name="yaml_text"' in page and "data-validate-url" in page
    response = as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": SHOP})
    assert response.status_code == 302 and response["Location"] == reverse("machines-detail", args=["shop"])
    version = Machine.objects.get(name="shop").current_version
    assert (version.number, version.created_by, version.source) == (1, "ada", "editor")


def test_it_refuses_an_invalid_machine_and_lists_errors_with_lines(as_admin):
    bad = SHOP.replace("state: WAIT", "state: WAYT")
    response = as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": bad})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was saved" in html and "WAYT" in html and 'data-line="11"' in html
    assert not Machine.objects.filter(name="shop").exists()
    assert "state: WAYT" in html  # what was typed stays in the editor


def test_it_refuses_bad_and_taken_machine_names(as_admin, shop):
    assert b"must be lower case" in as_admin.post(reverse("machines-new"), {"name": "Shop", "yaml_text": SHOP}).content
    assert b"already exists" in as_admin.post(reverse("machines-new"), {"name": "shop", "yaml_text": SHOP}).content


def test_it_saves_an_edit_as_a_new_version(as_admin, shop):
    page = as_admin.get(reverse("machines-edit", args=["shop"])).content.decode()
    assert "Saving creates version 2" in page and 'name="base_version" value="1"' in page
    response = as_admin.post(reverse("machines-edit", args=["shop"]), {"yaml_text": SHOP_V2, "base_version": 1})
    assert response.status_code == 302
    assert Machine.objects.get(name="shop").current_version.number == 2


def test_it_warns_before_saving_over_a_newer_version(as_admin, shop):
    save_machine("shop", SHOP_V2, actor="bob", source="api")
    third = SHOP_V2.replace("EXTRA", "MORE")
    stale = as_admin.post(reverse("machines-edit", args=["shop"]), {"yaml_text": third, "base_version": 1})
    assert stale.status_code == 400 and b"was saved as version 2 by bob" in stale.content
    assert Machine.objects.get(name="shop").current_version.number == 2
    forced = as_admin.post(reverse("machines-edit", args=["shop"]),
                        {"yaml_text": third, "base_version": 1, "overwrite": "on"})
    assert forced.status_code == 302
    assert Machine.objects.get(name="shop").current_version.number == 3


def test_it_draws_the_editor_preview(as_admin):
    response = as_admin.post(reverse("machines-preview"), SHOP, content_type="application/yaml")
    body = response.json()
    assert response.status_code == 200 and body["dot"].startswith("digraph") and "flowchart" in body["mermaid"]
    assert (body["svg"] is not None) == diagrams.dot_available()
    invalid = as_admin.post(reverse("machines-preview"), "version: 1\nstates: {}", content_type="application/yaml")
    assert invalid.status_code == 400


def test_it_validates_through_the_api_with_the_session(as_admin):
    response = as_admin.post("/api/machines/validate", "version: 1\nstates: {}\n", content_type="application/yaml")
    assert response.status_code == 200
    assert json.loads(response.content)["valid"] is False
