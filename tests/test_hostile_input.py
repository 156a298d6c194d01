"""Hostile and stale input (issue #9): every door answers a sentence and the right status, changes
nothing, and never answers 500. Database tests also run on PostgreSQL (`-m postgres`)."""

from __future__ import annotations

import json

import pytest

from stacks.models import Stack, StackEvent
from stacks.services import handle_event
from tests.conftest import SIMPLE_MACHINE  # noqa: F401 - the machine of the `simple_machine` fixture


def send(message: dict, actor: str = "tester", source: str = "api"):
    return handle_event(message, actor=actor, source=source)


def launch(stack_id: str = "s1", **extra):
    return send({"stackId": stack_id, "event": "LAUNCH", "machine": "simple", **extra})


# --- 3. a stale completion never brings a removed stack back ---------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("event", ["TASK_COMPLETED", "TASK_ERROR", "NEXT", "RETRY_FAILED_TASKS",
                                   "RETRY_PENDING_TASKS"])
def test_it_never_creates_a_stack_from_a_system_event(simple_machine, event):
    message = {"stackId": "ghost", "event": event, "machine": "simple"}
    if event.startswith("TASK_"):
        message["task"] = {"name": "db"}
    result = send(message, actor="worker", source="worker")
    assert result.status == 404
    assert "stack ghost does not exist" in result.body["error"]
    assert "never create a stack" in result.body["error"]
    assert not Stack.objects.exists()
    assert StackEvent.objects.get(stack_key="ghost").outcome == "rejected"


@pytest.mark.postgres
def test_it_refuses_a_late_completion_for_a_removed_stack_and_records_it_in_its_history(simple_machine):
    first = launch("gone")
    db_id = next(t["id"] for t in first.body["tasks"] if t["name"] == "db")
    assert send({"stackId": "gone", "event": "DESTROY"}).body["removed"] is True
    late = send({"stackId": "gone", "event": "TASK_COMPLETED", "machine": "simple", "task": {"id": db_id}},
                actor="worker", source="worker")
    assert late.status == 404
    assert "it was removed at" in late.body["error"]
    assert "task completions and errors never create a stack" in late.body["error"]
    assert Stack.objects.active().count() == 0 and Stack.objects.count() == 1
    removed = Stack.objects.get()
    entry = StackEvent.objects.filter(stack=removed).first()
    assert (entry.event, entry.outcome, entry.error) == ("TASK_COMPLETED", "rejected", late.body["error"])


@pytest.mark.postgres
def test_it_answers_404_through_the_api_for_a_stale_completion(client, simple_machine, make_user):
    from stacks.tokens import create_token

    _, raw = create_token(make_user("op", "operator"), name="t", role="operator")
    body = {"stackId": "gone", "event": "TASK_ERROR", "machine": "simple", "task": {"name": "db"},
            "description": "late"}
    response = client.post("/api/events", json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 404
    assert "never create a stack" in response.json()["error"]
    assert not Stack.objects.exists()
