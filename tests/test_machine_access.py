"""Limiting who may change stacks of which machines ("operators of qa-env only"), on every door."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from cloudseam_site.accounts.models import MachineAccess
from cloudseam_site.accounts.roles import Actor
from cloudseam_site.accounts.tokens import issue_token
from machines_app.models import Machine
from machines_app.services import save_machine
from stacks.models import Stack, StackEvent
from stacks.services import handle_event
from tests.conftest import SIMPLE_MACHINE
from tests.support import make_user

pytestmark = pytest.mark.postgres


@pytest.fixture
def machines(db):
    save_machine("qa-env", SIMPLE_MACHINE, actor="t")
    save_machine("prod", SIMPLE_MACHINE, actor="t")
    for key, machine in (("qa-1", "qa-env"), ("prod-1", "prod")):
        handle_event({"stackId": key, "event": "LAUNCH", "machine": machine}, actor="setup", source="api")


@pytest.fixture
def qa_operator(machines):
    user = make_user("quinn", "operator")
    MachineAccess.objects.create(user=user).machines.set(Machine.objects.filter(name="qa-env"))
    return user


def test_it_refuses_changes_outside_the_actors_machines_and_records_them(machines):
    actor = Actor("quinn", frozenset({"qa-env"}))
    refused = handle_event({"stackId": "prod-1", "event": "DESTROY"}, actor=actor, source="api")
    assert refused.status == 403
    assert refused.body["error"] == "quinn may not change stacks of machine prod; machines allowed: qa-env"
    assert Stack.objects.get(key="prod-1").state == "PROVISION"
    assert StackEvent.objects.filter(stack_key="prod-1", outcome="rejected", actor="quinn").exists()
    created = handle_event({"stackId": "prod-2", "event": "LAUNCH", "machine": "prod"}, actor=actor, source="api")
    assert created.status == 403 and not Stack.objects.filter(key="prod-2").exists()
    allowed = handle_event({"stackId": "qa-1", "event": "DESTROY"}, actor=actor, source="api")
    assert allowed.status == 200


def test_it_limits_a_users_api_requests(client, qa_operator):
    client.force_login(qa_operator)
    client.cookies["csrftoken"] = "x" * 32  # a session write needs the CSRF header to match the cookie
    post = {"content_type": "application/json", "HTTP_X_CSRFTOKEN": "x" * 32}
    prod = client.post("/api/events", json.dumps({"stackId": "prod-1", "event": "DESTROY"}), **post)
    assert prod.status_code == 403 and "machine prod" in prod.json()["error"]
    qa = client.post("/api/events", json.dumps({"stackId": "qa-1", "event": "DESTROY"}), **post)
    assert qa.status_code == 200
    assert client.get("/api/stacks/prod-1").status_code == 200  # reading is never limited


def test_it_limits_a_token_to_its_machines_within_its_users(client, machines):
    user = make_user("tess", "operator")
    token, raw = issue_token(None, user, "ci", "operator")
    token.machines.set(Machine.objects.filter(name="qa-env"))
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    prod = client.post("/api/events", json.dumps({"stackId": "prod-1", "event": "DESTROY"}),
                       content_type="application/json", **headers)
    assert prod.status_code == 403 and "tess (token ci) may not change stacks of machine prod" in prod.json()["error"]
    assert client.post("/api/events", json.dumps({"stackId": "qa-1", "event": "DESTROY"}),
                       content_type="application/json", **headers).status_code == 200


def test_it_gives_a_token_no_machine_its_user_may_not_change(machines):
    from cloudseam_site.accounts.roles import machine_scope

    user = make_user("uma", "operator")
    MachineAccess.objects.create(user=user).machines.set(Machine.objects.filter(name="qa-env"))
    token, _ = issue_token(None, user, "wide", "operator")
    token.machines.set(Machine.objects.all())
    assert machine_scope(user, token) == frozenset({"qa-env"})
    assert machine_scope(make_user("free", "operator")) is None


def test_it_limits_page_actions(client, qa_operator):
    client.force_login(qa_operator)
    response = client.post("/stacks/prod-1/event/", {"event": "DESTROY", "confirm": "prod-1"})
    assert "may not change stacks of machine prod" in response.content.decode()
    assert Stack.objects.get(key="prod-1").state == "PROVISION"


def test_it_limits_admin_actions_per_stack(client, machines):
    user = make_user("ollie", "operator")
    MachineAccess.objects.create(user=user).machines.set(Machine.objects.filter(name="qa-env"))
    client.force_login(user)
    ids = [str(pk) for pk in Stack.objects.order_by("key").values_list("pk", flat=True)]
    handle_event({"stackId": "qa-1", "event": "TASK_ERROR", "task": {"name": "db"}, "description": "x"},
                 actor="t", source="api")
    handle_event({"stackId": "prod-1", "event": "TASK_ERROR", "task": {"name": "db"}, "description": "x"},
                 actor="t", source="api")
    client.post("/admin/stacks/stack/", {"action": "retry_failed", "_selected_action": ids}, follow=True)
    outcomes = dict(StackEvent.objects.filter(event="RETRY_FAILED_TASKS").values_list("stack_key", "outcome"))
    assert outcomes == {"qa-1": "applied", "prod-1": "rejected"}


def test_it_creates_limited_tokens_from_the_command_line(machines):
    out = io.StringIO()
    call_command("create_token", "cici", "--role", "operator", "--machine", "qa-env", stdout=out)
    assert "limited to qa-env" in out.getvalue()
    from cloudseam_site.accounts.models import ApiToken

    assert list(ApiToken.objects.get(user__username="cici").machines.values_list("name", flat=True)) == ["qa-env"]


def test_it_gives_an_outsider_no_way_to_claim_a_message_id(machines):
    outsider = Actor("quinn", frozenset({"qa-env"}))
    mismatch = handle_event({"stackId": "prod-1", "event": "DESTROY", "machine": "qa-env", "id": "m1"},
                            actor=outsider, source="api")
    assert mismatch.status == 403  # refused for who is asking, before anything about the stack is said
    missing = handle_event({"stackId": "prod-9", "event": "LAUNCH", "id": "m2"}, actor=outsider, source="api")
    assert missing.status == 404
    assert handle_event({"stackId": "prod-1", "event": "DESTROY", "id": "m1"}, actor="ops", source="api").status == 200
    created = handle_event({"stackId": "prod-9", "event": "LAUNCH", "machine": "prod", "id": "m2"}, actor="ops",
                           source="api")
    assert created.status == 200 and not created.repeated
