"""Triage: quick filters with counts (one query), on the dashboard and the API; bulk actions per stack."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from machines_app.services import save_machine
from stacks.models import QUICK_FILTERS, Stack, StackEvent
from stacks.services import handle_event
from tests.support import make_user

pytestmark = pytest.mark.postgres

TRIAGE = """\
version: 1
events: [LAUNCH, WAIT, FINISH, DESTROY]
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: BUILD}]
      WAIT: [{action: advance, state: APPROVE}]
      FINISH: [{action: advance, state: RUN}]
  BUILD:
    tasks: [job]
    on:
      NEXT: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  APPROVE:
    tasks: [ok]
    on:
      NEXT: [{action: advance, state: RUN}]
      DESTROY: [{action: advance, state: GONE}]
  RUN:
    on:
      DESTROY: [{action: advance, state: GONE}]
  GONE:
    terminal: true
tasks:
  job: {executor: sleep, config: {seconds: 1}}
  ok: {executor: external}
"""


def send(stack_id, event, **extra):
    result = handle_event({"stackId": stack_id, "event": event, **extra}, actor="tester", source="api")
    assert result.ok, result.body
    return result


@pytest.fixture
def stacks(db):
    """failed-1, failed-2 (a task in ERROR), running-1 (sleep task PENDING), waiting-1 (external task
    PENDING), calm-1 (RUN, changed now) and old-1 (RUN, unchanged for 3 days)."""
    save_machine("triage", TRIAGE, actor="tests", source="tests")
    for key in ("failed-1", "failed-2", "running-1"):
        send(key, "LAUNCH", machine="triage")
    for key in ("failed-1", "failed-2"):
        send(key, "TASK_ERROR", task={"name": "job"}, description="exit 1")
    send("waiting-1", "WAIT", machine="triage")
    send("calm-1", "FINISH", machine="triage")
    send("old-1", "FINISH", machine="triage")
    Stack.objects.filter(key="old-1").update(updated_at=timezone.now() - timedelta(days=3))
    return Stack.objects.active()


EXPECTED = {"failed": {"failed-1", "failed-2"}, "waiting": {"waiting-1"}, "running": {"running-1"},
            "idle": {"old-1"}}


def test_it_filters_by_each_quick_filter(stacks):
    for status, keys in EXPECTED.items():
        assert set(Stack.objects.active().search(status=status).values_list("key", flat=True)) == keys, status


def test_it_counts_every_quick_filter_in_one_query(stacks, django_assert_num_queries):
    with django_assert_num_queries(1):
        counts = Stack.objects.active().quick_counts()
    assert counts == {status: len(keys) for status, keys in EXPECTED.items()}
    for status in QUICK_FILTERS:  # the counts agree with the filters themselves
        assert counts[status] == Stack.objects.active().search(status=status).count()


def test_it_takes_idle_hours_from_the_caller(stacks):
    assert Stack.objects.active().quick_counts(idle_hours=24 * 4)["idle"] == 0
    assert Stack.objects.active().search(status="idle", idle_hours=1).count() == 1


def test_it_counts_within_the_other_filters(stacks):
    assert Stack.objects.active().search(q="failed-1").quick_counts()["failed"] == 1


# --- the dashboard --------------------------------------------------------------------------------------


def test_it_shows_quick_filters_with_counts_to_viewers_without_bulk_actions(stacks, client):
    client.force_login(make_user("vera", "viewer"))
    page = client.get("/?status=failed").content.decode()
    assert 'data-count="failed">2<' in page and 'data-count="idle">1<' in page
    assert "failed-1" in page and "running-1" not in page
    assert 'id="bulk-form"' not in page and 'name="stack"' not in page


def test_it_keeps_the_filters_in_the_url_and_shows_bulk_actions_to_operators(stacks, client):
    client.force_login(make_user("otto", "operator"))
    page = client.get("/?status=idle&idleHours=48&machine=triage").content.decode()
    assert "Idle &gt; 48 h" in page and "old-1" in page and "calm-1" not in page
    assert 'href="?machine=triage&amp;idleHours=48&amp;status=failed"' in page
    assert 'id="bulk-form"' in page and 'value="old-1" form="bulk-form"' in page
    data = client.get("/?status=failed&format=json").json()
    assert data["counts"]["failed"] == 2 and {s["id"] for s in data["stacks"]} == EXPECTED["failed"]


def test_it_ignores_a_bad_idle_hours_with_a_sentence(stacks, client):
    client.force_login(make_user("vera", "viewer"))
    response = client.get("/?status=idle&idleHours=abc")
    assert response.status_code == 200
    assert "Idle hours:" in response.content.decode()


# --- the API ----------------------------------------------------------------------------------------


def test_it_filters_the_api_by_status(stacks, client):
    client.force_login(make_user("vera", "viewer"))
    body = client.get("/api/stacks?status=waiting").json()
    assert [s["id"] for s in body["results"]] == ["waiting-1"]
    body = client.get("/api/stacks?status=idle&idleHours=100").json()
    assert body["count"] == 0


@pytest.mark.parametrize("query", ["status=broken", "status=idle&idleHours=0", "status=idle&idleHours=999999"])
def test_it_refuses_a_bad_status_filter_with_a_sentence(stacks, client, query):
    client.force_login(make_user("vera", "viewer"))
    response = client.get(f"/api/stacks?{query}")
    assert response.status_code == 400
    assert response.json()["error"].split()[0] in ("status", "idleHours")


def test_it_documents_the_quick_filters_in_openapi(client, db):
    client.force_login(make_user("vera", "viewer"))
    params = client.get("/api/openapi.json").json()["paths"]["/api/stacks"]["get"]["parameters"]
    assert {"status", "idleHours"} <= {p["name"] for p in params}


# --- bulk actions -------------------------------------------------------------------------------------


@pytest.fixture
def otto(db):
    return make_user("otto", "operator")


def test_it_retries_the_ticked_stacks_and_reports_each(stacks, client, otto):
    client.force_login(otto)
    response = client.post("/bulk/", {"action": "retry_failed", "scope": "selected",
                                      "stack": ["failed-1", "failed-2", "calm-1", "ghost"]})
    assert response.status_code == 200
    page = response.content.decode()
    assert "2 stacks done, 2 refused" in page
    assert 'data-stack="calm-1"><strong>calm-1</strong>: ' in page and "no failed tasks" in page.lower()
    assert "ghost" in page and "no active stack with this id" in page
    for key in ("failed-1", "failed-2"):
        entry = StackEvent.objects.filter(stack_key=key).first()
        assert (entry.event, entry.outcome, entry.actor, entry.source) == ("RETRY_FAILED_TASKS", "applied", "otto",
                                                                           "ui")
    assert not Stack.objects.active().search(status="failed").exists()


def test_it_acts_on_all_matching_only_with_the_number_typed(stacks, client, otto):
    client.force_login(otto)
    form = {"action": "event", "event": "DESTROY", "scope": "all", "status": "idle"}
    refused = client.post("/bulk/", {**form, "confirm": "5"})
    assert refused.status_code == 400
    assert "1 stack match this filter now: type 1 to confirm" in refused.content.decode()
    assert Stack.objects.active().filter(key="old-1").exists()
    done = client.post("/bulk/", {**form, "confirm": "1"})
    assert done.status_code == 200 and "RUN → GONE" in done.content.decode()
    assert not Stack.objects.active().filter(key="old-1").exists()
    assert Stack.objects.active().filter(key="calm-1").exists()


def test_it_sets_metadata_on_many_stacks(stacks, client, otto):
    client.force_login(otto)
    response = client.post("/bulk/", {"action": "metadata", "meta_key": "owner", "meta_value": "team-a",
                                      "stack": ["calm-1", "old-1"]})
    assert response.status_code == 200
    assert {s.metadata.get("owner") for s in Stack.objects.filter(key__in=["calm-1", "old-1"])} == {"team-a"}


@pytest.mark.parametrize(("form", "sentence"), [
    ({"action": "retry_failed"}, "tick the stacks to act on"),
    ({"action": "event", "stack": ["calm-1"]}, "name the event to send"),
    ({"action": "metadata", "stack": ["calm-1"]}, "name the metadata entry"),
    ({"action": "explode", "stack": ["calm-1"]}, "choose an action"),
])
def test_it_refuses_an_incomplete_bulk_form_with_a_sentence(stacks, client, otto, form, sentence):
    client.force_login(otto)
    response = client.post("/bulk/", form)
    assert response.status_code == 400
    assert sentence in response.content.decode()


def test_it_refuses_bulk_actions_to_viewers(stacks, client):
    client.force_login(make_user("vera", "viewer"))
    response = client.post("/bulk/", {"action": "retry_failed", "stack": ["failed-1"]})
    assert response.status_code == 403
    assert StackEvent.objects.filter(event="RETRY_FAILED_TASKS").count() == 0


def test_it_keeps_machine_limits_per_stack(stacks, client, otto):
    from cloudseam_site.accounts.models import MachineAccess

    MachineAccess.objects.create(user=otto)  # may change stacks of no machine
    client.force_login(otto)
    page = client.post("/bulk/", {"action": "retry_failed", "stack": ["failed-1"]}).content.decode()
    assert "0 stacks done, 1 refused" in page and "may not change stacks of machine triage" in page
