"""The HTTP API (DESIGN §6.2): every status code, hostile input, and never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacks.models import Stack, StackEvent
from tests.conftest import SIMPLE_MACHINE

pytestmark = pytest.mark.postgres  # also run on PostgreSQL by `make test`


@pytest.fixture
def op(bearer):
    return bearer("operator")


def post_event(client, headers, message, content_type="application/json"):
    body = message if isinstance(message, str | bytes) else json.dumps(message)
    return client.post("/api/events", data=body, content_type=content_type, **headers)


def test_it_launches_a_stack_and_answers_with_its_snapshot(client, op, simple_machine):
    response = post_event(client, op, {"stackId": "master", "action": "LAUNCH", "machine": "simple",
                                       "metadata": {"apiImageTag": "e724e9", "replicas": 2, "canary": False}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"id", "machine", "machineVersion", "state", "previousState", "tasks", "metadata", "removed",
                         "createdAt", "updatedAt"}
    assert body["state"] == "PROVISION" and body["metadata"]["replicas"] == 2
    assert set(body["tasks"][0]) >= {"id", "name", "status", "errorMessage", "attempts"}
    assert StackEvent.objects.get().actor == "api-operator (token tests)"


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"stackId": "a" * 10_000, "event": "LAUNCH", "machine": "simple"}, "a string of 10000 characters"),
        ({"stackId": "a/b", "event": "LAUNCH", "machine": "simple"}, "stackId must be 1 to 63"),
        ({"stackId": "removed", "event": "LAUNCH", "machine": "simple"}, "'removed' is reserved"),
        ({"stackId": 42, "event": "LAUNCH", "machine": "simple"}, "got a number"),
        ({"stackId": "a", "event": 7, "machine": "simple"}, "event must be"),
        ({"stackId": "a", "machine": "simple"}, "event is required"),
        ({"event": "LAUNCH", "machine": "simple"}, "stackId is required"),
        ({"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"x": {"y": 1}}}, "must be flat"),
        ({"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"x": [1]}}, "must be flat"),
        ({"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": ["x"]}, "flat object"),
        ({"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"x": "a\x00b"}}, "NUL character"),
        ({"stackId": "a", "event": "LAUNCH", "machine": "simple", "description": "\x00"}, "NUL character"),
        ({"stackId": "a", "event": "LAUNCH", "machine": ["simple"]}, "machine must be"),
        ({"stackId": "a", "event": "LAUNCH", "action": "DESTROY"}, "not both"),
        ({"stackId": "a", "event": "LAUNCH", "colour": "red"}, "unknown field 'colour'"),
        ({"stackId": "a", "event": "TASK_COMPLETED"}, "needs task"),
        ({"stackId": "a", "event": "TASK_COMPLETED", "task": {"name": "x", "id": "y"}}, "task must be"),
        ([1, 2, 3], "must be a JSON object"),
    ],
)
def test_it_refuses_malformed_messages_with_a_sentence(client, op, simple_machine, message, words):
    response = post_event(client, op, message)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert len(response.content) < 1000  # a hostile value is described, not echoed
    assert not Stack.objects.exists()


@pytest.mark.parametrize("body", ['{"stackId": "a",', "not json", '{"stackId": NaN}', "\xff\xfe"])
def test_it_refuses_malformed_json(client, op, body):
    response = post_event(client, op, body.encode("latin-1"))
    assert response.status_code == 400 and "error" in response.json()


def test_it_refuses_numbers_json_turns_into_infinity(client, op, simple_machine):
    body = '{"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"x": 1e400}}'
    response = post_event(client, op, body)
    assert response.status_code == 400 and "not a finite number" in response.json()["error"]
    assert not Stack.objects.exists()


def test_it_requires_json_content_type(client, op, simple_machine):
    response = post_event(client, op, json.dumps({"stackId": "a", "event": "LAUNCH", "machine": "simple"}),
                          content_type="text/plain")
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert not Stack.objects.exists()


def test_it_refuses_huge_bodies(client, op, simple_machine):
    huge = json.dumps({"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"x": "y" * 300_000}})
    response = post_event(client, op, huge)
    assert response.status_code == 413 and "256 KiB" in response.json()["error"]


def test_it_answers_401_to_anonymous_and_bad_tokens(client, simple_machine):
    message = {"stackId": "a", "event": "LAUNCH", "machine": "simple"}
    anonymous = post_event(client, {}, message)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    bad = post_event(client, {"HTTP_AUTHORIZATION": "Bearer cs_not-a-real-token"}, message)
    assert bad.status_code == 401 and "not valid" in bad.json()["error"]
    assert client.get("/api/stacks").status_code == 401


def test_it_answers_403_to_a_viewer_sending_events(client, bearer, simple_machine):
    response = post_event(client, bearer("viewer"), {"stackId": "a", "event": "LAUNCH", "machine": "simple"})
    assert response.status_code == 403 and "operator" in response.json()["error"]


def test_it_answers_404_and_409_as_the_contract_says(client, op, simple_machine):
    assert post_event(client, op, {"stackId": "a", "event": "LAUNCH", "machine": "ghost"}).status_code == 404
    assert post_event(client, op, {"stackId": "a", "event": "LAUNCH"}).status_code == 404
    assert post_event(client, op, {"stackId": "a", "event": "LAUNCH", "machine": "simple"}).status_code == 200
    conflict = post_event(client, op, {"stackId": "a", "event": "LAUNCH"})
    assert conflict.status_code == 409 and "not accepted" in conflict.json()["error"]
    assert post_event(client, op, {"stackId": "a", "event": "NEXT"}).status_code == 400


def test_it_lists_filters_and_paginates_stacks(client, op, simple_machine):
    for i in range(5):
        post_event(client, op, {"stackId": f"feature-{i}", "event": "LAUNCH", "machine": "simple"})
    post_event(client, op, {"stackId": "feature-0", "event": "DESTROY"})  # removed
    page = client.get("/api/stacks?pageSize=2&page=2", **op).json()
    assert (page["count"], page["pages"], page["page"]) == (4, 2, 2)
    assert [s["id"] for s in page["results"]] == ["feature-3", "feature-4"]
    assert client.get("/api/stacks?q=ture-2", **op).json()["count"] == 1
    assert client.get("/api/stacks?state=PROVISION&machine=simple", **op).json()["count"] == 4
    assert client.get("/api/stacks?removed=true", **op).json()["results"][0]["id"] == "feature-0"
    assert client.get("/api/stacks?page=9", **op).status_code == 404
    assert client.get("/api/stacks?page=-1", **op).status_code == 400
    assert client.get("/api/stacks?pageSize=%C2%B2", **op).status_code == 400  # "²" is a digit, not a number
    assert client.get("/api/stacks/feature-1/history?page=%C2%B2", **op).status_code == 400


def test_it_keeps_a_removed_stack_and_its_history_readable(client, op, simple_machine):
    post_event(client, op, {"stackId": "gone", "event": "LAUNCH", "machine": "simple"})
    post_event(client, op, {"stackId": "gone", "event": "DESTROY"})
    detail = client.get("/api/stacks/gone", **op).json()
    assert detail["removed"] is True and detail["state"] == "GONE"
    history = client.get("/api/stacks/gone/history", **op).json()
    assert [h["event"] for h in history["results"]] == ["DESTROY", "LAUNCH"]
    entry = history["results"][0]
    assert set(entry) >= {"id", "event", "source", "actor", "outcome", "fromState", "toState", "error", "metadata",
                          "createdAt"}
    assert client.get("/api/stacks/never", **op).status_code == 404


def test_it_describes_machines(client, op, simple_machine):
    assert client.get("/api/machines", **op).json()["results"][0]["name"] == "simple"
    detail = client.get("/api/machines/simple", **op).json()
    assert detail["yaml"] == SIMPLE_MACHINE and detail["definition"]["states"]["INIT"]["on"]["LAUNCH"]
    assert "PROVISION" in detail["mermaid"] and "digraph" in detail["dot"]
    assert client.get("/api/machines/ghost", **op).status_code == 404


def test_it_validates_machines_without_saving(client, op):
    ok = client.post("/api/machines/validate", data=SIMPLE_MACHINE, content_type="application/yaml", **op).json()
    assert ok == {"valid": True, "errors": [], "warnings": ok["warnings"]}
    bad = client.post("/api/machines/validate", data=SIMPLE_MACHINE.replace("state: RUN", "state: RUNN"),
                      content_type="application/yaml", **op).json()
    assert bad["valid"] is False
    assert bad["errors"][0]["path"] == "states.PROVISION.on.NEXT[0].state" and bad["errors"][0]["line"] == 11
    assert "RUNN" in bad["errors"][0]["message"]


def test_it_refuses_an_alias_bomb_quickly(client, op):
    levels = zip("abcdefgh", "bcdefghi", strict=True)
    lines = [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in levels]
    bomb = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x]", *lines])
    response = client.post("/api/machines/validate", data=bomb, content_type="application/yaml", **op)
    assert response.status_code == 200 and response.json()["valid"] is False
    assert "alias" in response.json()["errors"][0]["message"]


def test_it_saves_machine_versions_for_admins_only(client, bearer, op):
    admin = bearer("admin")
    created = client.put("/api/machines/simple", data=SIMPLE_MACHINE, content_type="application/yaml", **admin)
    assert created.status_code == 201 and created.json()["version"] == 1
    same = client.put("/api/machines/simple", data=SIMPLE_MACHINE, content_type="application/yaml", **admin)
    assert same.status_code == 200 and same.json()["created"] is False
    invalid = client.put("/api/machines/simple", data="version: 2", content_type="application/yaml", **admin)
    assert invalid.status_code == 400 and invalid.json()["errors"]
    assert client.put("/api/machines/simple", data=SIMPLE_MACHINE, content_type="application/yaml",
                      **op).status_code == 403
    assert client.put("/api/machines/simple", data=SIMPLE_MACHINE, content_type="application/json",
                      **admin).status_code == 415
    assert client.put("/api/machines/Bad%20Name", data=SIMPLE_MACHINE, content_type="application/yaml",
                      **admin).status_code == 400


def test_it_publishes_an_openapi_document(client, op):
    document = client.get("/api/openapi.json", **op).json()
    assert document["openapi"].startswith("3.") and "/api/events" in document["paths"]


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
messages = st.fixed_dictionaries(
    {}, optional={"stackId": json_values | st.sampled_from(["m", "feature-1"]),
                  "event": json_values | st.sampled_from(["LAUNCH", "DESTROY", "NEXT", "TASK_COMPLETED"]),
                  "machine": json_values | st.just("simple"), "metadata": json_values, "task": json_values,
                  "description": json_values, "id": json_values})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages)
def test_it_never_answers_500(client, op, simple_machine, message):
    response = post_event(client, op, message)
    assert response.status_code in (200, 400, 404, 409), response.content
    assert "error" in response.json() or response.status_code == 200


def test_it_answers_unknown_api_paths_and_methods_with_json(client, op):
    missing = client.get("/api/nothing/here", **op)
    assert missing.status_code == 404 and "openapi.json" in missing.json()["error"]
    wrong = client.delete("/api/events", **op)
    assert wrong.status_code == 405 and wrong["Allow"] == "POST" and "use POST" in wrong.json()["error"]


def test_it_keeps_a_removed_stacks_history_reachable_after_its_id_is_reused(client, op, simple_machine):
    post_event(client, op, {"stackId": "r1", "event": "LAUNCH", "machine": "simple"})
    old = post_event(client, op, {"stackId": "r1", "event": "DESTROY"}).json()
    post_event(client, op, {"stackId": "r1", "event": "LAUNCH", "machine": "simple"})
    assert client.get("/api/stacks/r1", **op).json()["removed"] is False
    listed = client.get("/api/stacks?removed=true", **op).json()["results"]
    assert [s["record"] for s in listed] == [old["record"]]
    record = client.get(f"/api/stacks/removed/{old['record']}", **op).json()
    assert record["removed"] is True and record["state"] == "GONE"
    history = client.get(f"/api/stacks/removed/{old['record']}/history", **op).json()
    assert [h["event"] for h in history["results"]] == ["DESTROY", "LAUNCH"]
    active = client.get("/api/stacks", **op).json()["results"][0]
    assert client.get(f"/api/stacks/removed/{active['record']}", **op).status_code == 404


def test_it_refuses_numbers_too_long_to_read(client, op, simple_machine):
    body = '{"stackId": "a", "event": "LAUNCH", "machine": "simple", "metadata": {"n": ' + "9" * 5000 + "}}"
    response = post_event(client, op, body)
    assert response.status_code == 400 and "cannot read" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/stacks?q=%00", "/api/stacks?machine=a%00b", "/api/stacks/a%00b",
                                  "/?q=%00", "/stacks/a%00b/"])
def test_it_refuses_nul_characters_in_addresses(client, op, path):
    response = client.get(path, **op)
    assert response.status_code == 400 and "NUL" in response.json()["error"]
