"""The stack page's metadata editor: typed values, renames, removals, edits made elsewhere meanwhile.

Through Django's test client, as a browser without JavaScript posts; the page scripts send the same
forms asking for JSON.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from stacks import services
from stacks.models import Stack, StackEvent
from tests.support import (
    XSS,
    form_data,
)
from tests.support import launch_shop as launch
from tests.support import waiting_shop_stack as waiting_stack

pytestmark = pytest.mark.django_db


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
