"""Signed webhooks in: GitHub pull_request and GitLab Merge Request Hook payloads (shaped as their
documentation shows) launch, update and destroy `pr-<n>`; bad signatures and replays change nothing."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest

from machines_app.models import Machine
from stacks.hooks.models import HookDelivery, InboundHook
from stacks.models import Stack, StackEvent

pytestmark = pytest.mark.postgres

PAYLOADS = Path(__file__).parent / "hook_payloads"
SECRET = "It's a Secret to Everybody"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def github_pr(action: str, number: int = 42, sha: str | None = None) -> dict:
    body = payload("github_pull_request_opened.json")
    body["action"], body["number"], body["pull_request"]["number"] = action, number, number
    if sha:
        body["pull_request"]["head"]["sha"] = sha
    if action == "closed":
        body["pull_request"]["state"], body["pull_request"]["merged"] = "closed", True
    return body


def gitlab_mr(action: str, **attrs) -> dict:
    body = payload("gitlab_merge_request_open.json")
    body["object_attributes"].update(action=action, **attrs)
    return body


@pytest.fixture
def github_hook(simple_machine):
    return InboundHook.objects.create(name="shop-prs", source="github", secret=SECRET,
                                      machine=Machine.objects.get(name="simple"))


@pytest.fixture
def gitlab_hook(simple_machine):
    return InboundHook.objects.create(name="shop-mrs", source="gitlab", secret=SECRET,
                                      machine=Machine.objects.get(name="simple"), stack_id_template="mr-{number}")


def post_github(client, body: dict, *, event="pull_request", delivery=None, secret=SECRET, hook="shop-prs"):
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(f"/hooks/{hook}", raw, content_type="application/json", headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature, "User-Agent": "GitHub-Hookshot/044aadd"})


def post_gitlab(client, body: dict, *, token=SECRET, delivery=None):
    return client.post("/hooks/shop-mrs", json.dumps(body), content_type="application/json", headers={
        "X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()), "Idempotency-Key": delivery or str(uuid.uuid4())})


def test_it_launches_and_destroys_a_stack_per_pull_request(client, github_hook):
    opened = post_github(client, github_pr("opened"))
    assert opened.status_code == 200, opened.json()
    stack = Stack.objects.get(key="pr-42", removed_at__isnull=True)
    assert stack.state == "PROVISION" and stack.machine.name == "simple"
    assert stack.metadata == {"branch": "feature/vouchers", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                              "repository": "acme/shop", "number": 42}
    assert opened.json()["stack"]["id"] == "pr-42" and opened.json()["kind"] == "pull_request.opened"

    closed = post_github(client, github_pr("closed"))
    assert closed.status_code == 200, closed.json()
    stack.refresh_from_db()
    assert stack.removed_at is not None and stack.state == "GONE"
    history = list(StackEvent.objects.filter(stack_key="pr-42").order_by("pk").values_list(
        "event", "source", "actor", "outcome"))
    assert history == [("LAUNCH", "webhook", "github:shop-prs", "applied"),
                       ("DESTROY", "webhook", "github:shop-prs", "applied")]


def test_it_updates_the_sha_on_new_commits(client, github_hook):
    post_github(client, github_pr("opened"))
    answer = post_github(client, github_pr("synchronize", sha="0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"))
    assert answer.status_code == 200 and answer.json()["event"] == "UPDATE_METADATA"
    assert Stack.objects.get(key="pr-42").metadata["sha"] == "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"


def test_it_refuses_a_bad_signature_and_changes_nothing(client, github_hook):
    for secret in ("wrong secret", ""):
        raw = json.dumps(github_pr("opened")).encode()
        headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4())}
        if secret:
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        answer = client.post("/hooks/shop-prs", raw, content_type="application/json", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"].startswith("The delivery was refused and nothing was changed: ")
    # A body changed after signing is refused too.
    raw = json.dumps(github_pr("opened")).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    tampered = raw.replace(b'"number": 42', b'"number": 43')
    answer = client.post("/hooks/shop-prs", tampered, content_type="application/json", headers={
        "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1", "X-Hub-Signature-256": signature})
    assert answer.status_code == 401
    assert not Stack.objects.exists() and not StackEvent.objects.exists() and not HookDelivery.objects.exists()


def test_it_refuses_a_replayed_delivery_and_applies_it_once(client, github_hook):
    first = post_github(client, github_pr("opened"), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = post_github(client, github_pr("opened"), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert first.status_code == 200
    assert again.status_code == 409
    assert "already received" in again.json()["error"] and again.json()["firstStatus"] == 200
    assert StackEvent.objects.filter(stack_key="pr-42").count() == 1
    assert HookDelivery.objects.count() == 1


def test_it_answers_unknown_hooks_and_unmapped_actions(client, github_hook):
    assert post_github(client, github_pr("opened"), hook="nope").status_code == 404
    labeled = post_github(client, github_pr("labeled"))
    assert labeled.status_code == 202 and labeled.json()["status"] == "ignored"
    assert "pull_request.labeled is not mapped" in labeled.json()["reason"]
    ping = post_github(client, {"zen": "Design for failure.", "hook_id": 1}, event="ping")
    assert ping.status_code == 202 and "ping received" in ping.json()["reason"]
    assert not Stack.objects.exists()


def test_it_refuses_a_delivery_without_an_id_or_with_a_broken_body(client, github_hook):
    raw = json.dumps(github_pr("opened")).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    answer = client.post("/hooks/shop-prs", raw, content_type="application/json", headers={
        "X-GitHub-Event": "pull_request", "X-Hub-Signature-256": signature})
    assert answer.status_code == 400 and "no usable id" in answer.json()["error"]
    broken = copy.deepcopy(github_pr("opened"))
    del broken["pull_request"]["head"]
    answer = post_github(client, broken)
    assert answer.status_code == 400 and "pull_request.head.ref" in answer.json()["error"]
    assert client.get("/hooks/shop-prs").status_code == 405


def test_it_passes_on_the_refusal_of_an_event_the_state_does_not_accept(client, github_hook):
    answer = post_github(client, github_pr("closed", number=7))  # no stack pr-7: DESTROY is not accepted in INIT
    assert answer.status_code == 409 and "DESTROY is not accepted" in answer.json()["error"]
    assert not Stack.objects.exists()
    assert StackEvent.objects.get(stack_key="pr-7").outcome == "rejected"


def test_it_maps_gitlab_merge_requests(client, gitlab_hook):
    opened = post_gitlab(client, gitlab_mr("open"))
    assert opened.status_code == 200, opened.json()
    stack = Stack.objects.get(key="mr-7")
    assert stack.metadata["branch"] == "feature/vouchers"
    assert stack.metadata["sha"] == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    title_only = post_gitlab(client, gitlab_mr("update"))
    assert title_only.status_code == 202
    pushed = post_gitlab(client, gitlab_mr("update", oldrev="da15608", last_commit={"id": "fe1dead"}))
    assert pushed.status_code == 200 and Stack.objects.get(key="mr-7").metadata["sha"] == "fe1dead"
    merged = post_gitlab(client, gitlab_mr("merge"))
    assert merged.status_code == 200 and Stack.objects.get(key="mr-7").removed_at is not None
    assert set(StackEvent.objects.values_list("actor", flat=True)) == {"gitlab:shop-mrs"}


def test_it_refuses_a_wrong_gitlab_token(client, gitlab_hook):
    assert post_gitlab(client, gitlab_mr("open"), token="guess").status_code == 401
    assert not Stack.objects.exists()


def test_it_takes_generic_signed_json(client, simple_machine):
    InboundHook.objects.create(name="deployer", source="generic", secret=SECRET,
                               machine=Machine.objects.get(name="simple"))
    raw = json.dumps({"stackId": "nightly", "event": "LAUNCH", "metadata": {"build": "1234"}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"X-CloudSeam-Signature-256": signature, "Idempotency-Key": "build-1234"}
    answer = client.post("/hooks/deployer", raw, content_type="application/json", headers=headers)
    assert answer.status_code == 200 and Stack.objects.get(key="nightly").metadata == {"build": "1234"}
    assert client.post("/hooks/deployer", raw, content_type="application/json", headers=headers).status_code == 409
    assert StackEvent.objects.get(stack_key="nightly").actor == "generic:deployer"


def test_it_describes_hooks_in_the_openapi_document(client):
    document = client.get("/api/openapi.json").json()
    hooks = document["paths"]["/hooks/{name}"]["post"]
    assert {"200", "202", "401", "404", "409"} <= set(hooks["responses"])
