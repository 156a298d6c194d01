"""The admin as an operations console: metadata edits, actions on several stacks, tasks, history, machines.

Every change made here must go through the services and appear in the stack's history with the
admin user as actor; history itself must be unchangeable.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from machines_app.models import Machine
from machines_app.services import save_machine
from stacks.models import ERROR, PENDING, Stack, StackEvent, Task
from tests.support import MACHINE, MACHINE_YAML, create_idle, fail_task, form_data, launch

STACKS = "/admin/stacks/stack/"
TASKS = "/admin/stacks/task/"
HISTORY = "/admin/stacks/stackevent/"


def stack(key: str) -> Stack:
    return Stack.objects.active().get(key=key)


def change_url(key: str) -> str:
    return reverse("admin:stacks_stack_change", args=[stack(key).pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def run_action(client, url: str, action: str, objects, **extra):
    data = {"action": action, "_selected_action": [str(o.pk) for o in objects], "index": "0", **extra}
    return client.post(url, data, follow=True)


def admin_history(key: str) -> list[StackEvent]:
    return list(StackEvent.objects.filter(stack_key=key, source="admin").order_by("id"))


# --- the stacks list ----------------------------------------------------------------------------


def test_it_lists_stacks_with_filters_and_search(client, otto, machine):
    launch("alpha")
    launch("beta")
    fail_task("beta")
    create_idle("gamma")
    launch("gone")
    from stacks.services import send

    assert send("gone", "DESTROY", actor="tests", source="tests").ok  # terminal, no tasks: removed
    client.force_login(otto)

    def keys(query: str = "") -> set[str]:
        response = client.get(STACKS + query)
        assert response.status_code == 200
        return {s.key for s in response.context["cl"].result_list}

    assert keys() == {"alpha", "beta", "gamma"}  # active stacks by default
    assert keys("?lifecycle=removed") == {"gone"}
    assert keys("?lifecycle=all") == {"alpha", "beta", "gamma", "gone"}
    assert keys("?failed=yes") == {"beta"}
    assert keys("?failed=no") == {"alpha", "gamma"}
    assert keys("?state=INIT") == {"gamma"}
    assert keys(f"?machine__id__exact={Machine.objects.get(name=MACHINE).pk}") == {"alpha", "beta", "gamma"}
    assert keys("?q=bet") == {"beta"}


def test_it_shows_state_and_tasks_read_only(client, otto, machine):
    launch("alpha")
    client.force_login(otto)
    response = client.get(change_url("alpha"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "DEPLOY" in page and "build" in page and "approve" in page
    fields = form_data(page, "stack_form")
    assert "state" not in fields and not any(name.startswith("tasks-0-status") for name in fields)


# --- metadata: the "Edit metadata…" page, with the stack page's own editor ------------------------


def metadata_url(key: str) -> str:
    return reverse("admin:stacks_stack_metadata", args=[stack(key).pk])


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def editor_fields(client, key: str) -> dict:
    fields = form_data(client.get(metadata_url(key)).content.decode(), "metadata-form")
    for name in ("meta_original", "meta_key", "meta_value"):
        fields[name] = as_list(fields[name])
    return fields


def set_value(fields: dict, key: str, value: str) -> None:
    fields["meta_value"][fields["meta_key"].index(key)] = value


def add_row(fields: dict, key: str, value: str) -> None:
    for name, text in (("meta_original", ""), ("meta_key", key), ("meta_value", value)):
        fields[name].append(text)


def test_it_saves_metadata_edits_through_the_service(client, otto, machine):
    launch("alpha", branch="main", port=8080, stale="yes")
    client.force_login(otto)
    assert "Edit metadata…" in client.get(change_url("alpha")).content.decode()
    fields = editor_fields(client, "alpha")
    assert dict(zip(fields["meta_key"], fields["meta_value"], strict=True))["port"] == "8080"
    set_value(fields, "branch", "feature-123")
    fields["meta_key"][fields["meta_key"].index("stale")] = ""  # clearing a name removes the entry
    add_row(fields, "replicas", "3")
    add_row(fields, "public", "true")
    add_row(fields, "ticket", '"4711"')

    response = client.post(metadata_url("alpha"), fields, follow=True)

    assert response.status_code == 200
    assert any("saved" in m and "recorded in its history" in m for m in messages_of(response))
    assert stack("alpha").metadata == {"branch": "feature-123", "port": 8080, "replicas": 3, "public": True,
                                       "ticket": "4711"}
    [event] = admin_history("alpha")
    assert (event.event, event.actor, event.outcome) == ("UPDATE_METADATA", "otto", "applied")
    assert event.metadata == {"branch": "feature-123", "stale": None, "replicas": 3, "public": True,
                              "ticket": "4711"}
    assert LogEntry.objects.get(object_id=str(stack("alpha").pk)).change_message.startswith("Changed metadata")


@pytest.mark.parametrize(
    ("key", "value"),
    [("nested", '{"a": 1}'), ("listed", "[1, 2]"), ("", "orphan"), ("branch", "again"), ("x" * 101, "long key")],
)
def test_it_refuses_bad_metadata_and_saves_nothing(client, otto, machine, key, value):
    launch("alpha", branch="main", port=8080, stale="yes")
    client.force_login(otto)
    fields = editor_fields(client, "alpha")
    set_value(fields, "port", "9090")  # a valid change alongside: it must not be saved either
    add_row(fields, key, value)

    response = client.post(metadata_url("alpha"), fields)

    assert response.status_code == 400  # the editor again, with the row marked
    assert 'aria-invalid="true"' in response.content.decode() or "errornote" in response.content.decode()
    assert stack("alpha").metadata == {"branch": "main", "port": 8080, "stale": "yes"}
    assert admin_history("alpha") == []


def test_it_keeps_metadata_that_someone_else_added_while_the_page_was_open(client, otto, machine):
    launch("alpha", branch="main")
    client.force_login(otto)
    fields = editor_fields(client, "alpha")
    from stacks.services import update_metadata

    assert update_metadata("alpha", {"owner": "team-a"}, actor="api-user", source="api").ok
    set_value(fields, "branch", "release")

    client.post(metadata_url("alpha"), fields)

    assert stack("alpha").metadata == {"branch": "release", "owner": "team-a"}


def test_it_says_so_when_nothing_changed_and_records_nothing(client, otto, machine):
    launch("alpha", branch="main", port="8080")  # a string that looks like a number round-trips as a string
    client.force_login(otto)

    response = client.post(metadata_url("alpha"), editor_fields(client, "alpha"), follow=True)

    assert "The metadata was not changed." in messages_of(response)
    assert admin_history("alpha") == []
    assert stack("alpha").metadata == {"branch": "main", "port": "8080"}


def test_it_shows_a_viewer_the_metadata_without_an_editor(client, vera, machine):
    launch("alpha", branch="main")
    client.force_login(vera)
    page = client.get(change_url("alpha")).content.decode()
    assert "branch" in page and "Edit metadata…" not in page
    assert client.get(metadata_url("alpha")).status_code == 403
    fields = {"meta_shown": "{}", "meta_original": "", "meta_key": "branch", "meta_value": "x"}
    assert client.post(metadata_url("alpha"), fields).status_code == 403
    assert stack("alpha").metadata == {"branch": "main"}


def test_it_makes_removed_stacks_read_only(client, otto, machine):
    launch("gone", branch="main")
    from stacks.services import send

    assert send("gone", "DESTROY", actor="tests", source="tests").ok
    removed = Stack.objects.removed().get(key="gone")
    client.force_login(otto)
    assert "Edit metadata…" not in client.get(reverse("admin:stacks_stack_change", args=[removed.pk])).content.decode()
    url = reverse("admin:stacks_stack_metadata", args=[removed.pk])
    fields = {"meta_shown": '{"branch": "main"}', "meta_original": "branch", "meta_key": "branch", "meta_value": "x"}
    response = client.post(url, fields, follow=True)
    assert any("was removed" in m for m in messages_of(response))
    assert Stack.objects.get(pk=removed.pk).metadata == {"branch": "main"}


# --- actions on several stacks ------------------------------------------------------------------


def test_it_retries_failed_tasks_on_several_stacks_and_reports_each(client, otto, machine):
    for key in ("alpha", "beta", "gamma"):
        launch(key)
    fail_task("alpha")
    fail_task("beta", "approve")
    client.force_login(otto)

    response = run_action(client, STACKS, "retry_failed", [stack("alpha"), stack("beta"), stack("gamma")])

    messages = messages_of(response)
    assert "Failed tasks retried: alpha, beta." in messages
    assert "Stack gamma: stack gamma has no failed tasks to retry" in messages
    for key in ("alpha", "beta"):
        assert [t.status for t in stack(key).current_tasks()] == [PENDING, PENDING]
        [event] = admin_history(key)
        assert (event.event, event.actor, event.outcome) == ("RETRY_FAILED_TASKS", "otto", "applied")
    [refused] = admin_history("gamma")
    assert (refused.outcome, refused.actor) == ("rejected", "otto")


def test_it_retries_pending_tasks_on_several_stacks(client, otto, machine):
    launch("alpha")
    launch("beta")
    before = {t.pk for t in Task.objects.all()}
    client.force_login(otto)

    response = run_action(client, STACKS, "retry_pending", [stack("alpha"), stack("beta")])

    assert "Pending tasks dispatched again: alpha, beta." in messages_of(response)
    assert [e.event for e in admin_history("alpha")] == ["RETRY_PENDING_TASKS"]
    assert [e.actor for e in admin_history("beta")] == ["otto"]
    current = Task.objects.filter(current=True)
    assert current.count() == 4 and not {t.pk for t in current} & before  # new instances, dispatched again


def test_it_sends_an_event_chosen_among_those_the_selected_stacks_accept(client, otto, machine):
    launch("alpha")  # DEPLOY: accepts DESTROY
    create_idle("beta")  # INIT: accepts LAUNCH and PAUSE
    create_idle("gamma")
    client.force_login(otto)
    selected = [stack("alpha"), stack("beta"), stack("gamma")]

    page = run_action(client, STACKS, "send_event", selected)

    assert page.status_code == 200
    html = page.content.decode()
    assert "LAUNCH (accepted by 2 of 3 selected stacks)" in html
    assert "PAUSE (accepted by 2 of 3 selected stacks)" in html
    assert "DESTROY (accepted by 1 of 3 selected stacks)" in html
    assert "NEXT" not in html.split("<form")[1]  # system events are never offered
    response = client.post(STACKS, {"action": "send_event", "_selected_action": [str(s.pk) for s in selected],
                                    "post": "yes", "event": "LAUNCH"}, follow=True)

    messages = messages_of(response)
    assert "LAUNCH applied: beta, gamma." in messages
    assert any(m.startswith("Stack alpha: event LAUNCH is not accepted") for m in messages), messages
    assert stack("beta").state == stack("gamma").state == "DEPLOY"
    assert stack("alpha").state == "DEPLOY"
    assert [(e.event, e.actor, e.outcome) for e in admin_history("beta")] == [("LAUNCH", "otto", "applied")]
    assert [(e.event, e.outcome) for e in admin_history("alpha")] == [("LAUNCH", "rejected")]


def test_it_says_when_no_selected_stack_accepts_any_event(client, otto, machine):
    launch("gone")
    from stacks.services import send

    assert send("gone", "DESTROY", actor="tests", source="tests").ok
    client.force_login(otto)
    response = run_action(client, STACKS + "?lifecycle=removed", "send_event", [Stack.objects.get(key="gone")])
    assert "None of the selected stacks accepts an event in its current state." in messages_of(response)


def test_it_moves_stacks_to_the_newest_version_or_says_why_not(client, otto, machine):
    launch("alpha")  # DEPLOY, which the new version renames
    create_idle("beta")  # INIT, which exists in both
    save_machine(MACHINE, MACHINE_YAML.replace("DEPLOY", "ROLLOUT"), actor="tests", source="tests")
    client.force_login(otto)

    response = run_action(client, STACKS, "move_to_newest_version", [stack("alpha"), stack("beta")])

    messages = messages_of(response)
    assert "Moved to the newest version: beta." in messages
    refusal = "Stack alpha: state DEPLOY does not exist in version 2 of demo"
    assert any(m.startswith(refusal) for m in messages), messages
    assert stack("beta").machine_version.number == 2
    assert stack("alpha").machine_version.number == 1
    assert [(e.event, e.actor) for e in admin_history("beta")] == [("UPGRADE_MACHINE", "otto")]


# --- tasks --------------------------------------------------------------------------------------


def test_it_lists_tasks_with_filters(client, vera, machine):
    launch("alpha")
    fail_task("alpha")
    client.force_login(vera)

    def names(query: str) -> list[tuple[str, str]]:
        response = client.get(TASKS + query)
        assert response.status_code == 200
        return sorted((t.stack.key, t.name) for t in response.context["cl"].result_list)

    assert names("?status__exact=ERROR") == [("alpha", "build")]
    assert names("?executor__exact=external") == [("alpha", "approve")]
    machine_id = Machine.objects.get(name=MACHINE).pk
    assert names(f"?stack__machine__id__exact={machine_id}") == [("alpha", "approve"), ("alpha", "build")]
    task = Task.objects.get(name="build")
    page = client.get(reverse("admin:stacks_task_change", args=[task.pk])).content.decode()
    assert "exit code 3" in page and "attempts" in page.lower()


def test_it_retries_failed_tasks_from_the_task_list(client, otto, machine):
    launch("alpha")
    launch("beta")
    fail_task("alpha")
    failed = Task.objects.get(stack__key="alpha", name="build", current=True)
    satisfied_elsewhere = Task.objects.filter(stack__key="beta", current=True).first()
    client.force_login(otto)

    response = run_action(client, TASKS, "retry", [failed])

    assert any(m.startswith("Sent to run again") and "alpha" in m for m in messages_of(response))
    assert Task.objects.get(stack__key="alpha", name="build", current=True).status == PENDING
    assert [(e.event, e.actor) for e in admin_history("alpha")] == [("RETRY_FAILED_TASKS", "otto")]
    assert satisfied_elsewhere.status == PENDING and admin_history("beta") == []


def test_it_says_when_a_selected_task_has_nothing_to_retry(client, otto, machine):
    launch("alpha")
    fail_task("alpha")
    client.force_login(otto)
    assert run_action(client, STACKS, "retry_failed", [stack("alpha")]).status_code == 200
    old = Task.objects.get(stack__key="alpha", name="build", current=False)  # replaced by the retry

    response = run_action(client, TASKS, "retry", [old])

    assert "Stack alpha: the selected tasks are done or no longer current; nothing to retry" in messages_of(response)


# --- history ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["root", "ada"])
def test_it_never_lets_anybody_edit_or_delete_history(client, request, machine, who):
    launch("alpha")
    event = StackEvent.objects.get(stack_key="alpha")
    client.force_login(request.getfixturevalue(who))
    change = reverse("admin:stacks_stackevent_change", args=[event.pk])

    assert client.get(HISTORY).status_code == 200
    assert client.get(change).status_code == 200  # readable
    assert client.get(reverse("admin:stacks_stackevent_add")).status_code == 403
    assert client.post(change, {"event": "FORGED", "actor": "someone"}).status_code == 403
    assert client.get(reverse("admin:stacks_stackevent_delete", args=[event.pk])).status_code == 403
    assert client.post(reverse("admin:stacks_stackevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert 'value="delete_selected"' not in client.get(HISTORY).content.decode()  # no bulk delete either
    run_action(client, HISTORY, "delete_selected", [event], post="yes")
    assert StackEvent.objects.get(pk=event.pk).event == "LAUNCH"


def test_it_filters_history_by_outcome_source_and_stack(client, vera, machine):
    launch("alpha")
    from stacks.services import send

    send("alpha", "LAUNCH", actor="someone", source="api")  # rejected: not accepted in DEPLOY
    client.force_login(vera)
    rejected = client.get(HISTORY + "?outcome__exact=rejected").context["cl"].result_list
    assert [(e.stack_key, e.actor) for e in rejected] == [("alpha", "someone")]
    by_stack = client.get(HISTORY + f"?stack__id__exact={stack('alpha').pk}").context["cl"].result_list
    assert len(by_stack) == 2
    assert f"?stack__id__exact={stack('alpha').pk}" in client.get(change_url("alpha")).content.decode()


# --- machines -----------------------------------------------------------------------------------


def test_it_shows_machine_yaml_with_line_numbers(client, vera, machine):
    client.force_login(vera)
    page = client.get(reverse("admin:machines_app_machine_change", args=[machine.machine_id])).content.decode()
    assert '<span id="L1"><span class="ln">1</span>version: 1</span>' in page
    assert '<span class="ln">3</span>states:' in page
    version_page = client.get(reverse("admin:machines_app_machineversion_change", args=[machine.pk]))
    assert '<span class="ln">2</span>events: [LAUNCH, DESTROY, PAUSE]' in version_page.content.decode()
    assert 'name="yaml"' not in page  # a viewer cannot edit


def test_it_saves_a_new_machine_version_from_the_admin(client, ada, machine):
    client.force_login(ada)
    url = reverse("admin:machines_app_machine_change", args=[machine.machine_id])
    fields = form_data(client.get(url).content.decode(), "machine_form")
    assert fields["yaml"] == MACHINE_YAML
    fields["yaml"] = MACHINE_YAML.replace("seconds: 1", "seconds: 2").replace("\n", "\r\n")

    response = client.post(url, fields, follow=True)

    assert "Saved demo version 2." in messages_of(response)
    current = Machine.objects.get(name=MACHINE).current_version
    assert (current.number, current.created_by, current.source) == (2, "ada", "admin")
    assert "\r" not in current.yaml_text
    again = client.post(url, {**fields, "yaml": current.yaml_text}, follow=True)
    assert any("no new version was made" in m for m in messages_of(again))
    assert Machine.objects.get(name=MACHINE).versions.count() == 2


def test_it_refuses_an_invalid_machine_with_the_validators_messages(client, ada, machine):
    client.force_login(ada)
    url = reverse("admin:machines_app_machine_change", args=[machine.machine_id])
    fields = form_data(client.get(url).content.decode(), "machine_form")
    broken = MACHINE_YAML.replace("state: LIVE", "state: LIEV")
    fields["yaml"] = broken
    from machines_app import spec

    [problem] = spec.validate(broken).errors

    response = client.post(url, fields)

    assert response.status_code == 200
    from django.utils.html import escape

    assert escape(problem.format()) in response.content.decode()
    assert "LIEV" in problem.message and problem.line
    assert Machine.objects.get(name=MACHINE).versions.count() == 1


def test_it_adds_a_machine_and_refuses_a_bad_name(client, ada, db):
    client.force_login(ada)
    add = reverse("admin:machines_app_machine_add")
    bad = client.post(add, {"name": "Bad Name", "yaml": MACHINE_YAML})
    assert bad.status_code == 200 and "is not allowed" in bad.content.decode()
    response = client.post(add, {"name": "fresh", "yaml": MACHINE_YAML}, follow=True)
    assert "Saved fresh version 1." in messages_of(response)
    assert Machine.objects.get(name="fresh").current_version.created_by == "ada"


def test_it_keeps_machine_versions_read_only(client, ada, machine):
    client.force_login(ada)
    url = reverse("admin:machines_app_machineversion_change", args=[machine.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"yaml_text": "version: 1"}).status_code == 403
    assert client.get(reverse("admin:machines_app_machineversion_delete", args=[machine.pk])).status_code == 403
    assert client.get(reverse("admin:machines_app_machineversion_add")).status_code == 403


# --- who gets in --------------------------------------------------------------------------------


def test_it_keeps_non_staff_out_of_the_admin(client, nora):
    client.force_login(nora)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_it_shows_a_staff_user_without_a_role_nothing(client, db):
    from tests.support import make_user

    client.force_login(make_user("sam", None))
    assert client.get("/admin/").status_code == 200
    assert client.get(STACKS).status_code == 403
    assert client.get(HISTORY).status_code == 403


def test_it_reports_each_failure_of_an_action_with_the_services_sentence(client, otto, machine):
    launch("alpha")
    client.force_login(otto)
    response = run_action(client, STACKS, "retry_failed", [stack("alpha")])
    assert messages_of(response) == ["Stack alpha: stack alpha has no failed tasks to retry"]
    assert Task.objects.filter(status=ERROR).count() == 0
