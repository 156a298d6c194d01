"""The stack page: diagram, tasks, history, one button per accepted event, retries, external tasks.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from machines_app import diagrams
from machines_app.services import save_machine
from stacks import services
from stacks.models import Stack, StackEvent
from tests.support import (
    SHOP_V2,
)
from tests.support import launch_shop as launch
from tests.support import waiting_shop_stack as waiting_stack

pytestmark = pytest.mark.django_db


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
