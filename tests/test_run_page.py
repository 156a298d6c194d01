"""The stack page shows the whole run (issue #8): path on the diagram, state visits, attempts,
the scrubber's frames, retrying one task; and the diagram's path drawing on its own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from machines_app import diagrams
from machines_app.services import save_machine
from stacks.models import Stack, TaskAttempt
from stacks.runtime.jobs import run_task
from stacks.services import handle_event
from tests.conftest import SIMPLE_MACHINE
from tests.test_attempts import MACHINE, PRINTS

pytestmark = pytest.mark.django_db


def client_for(name: str, group: str) -> Client:
    user = User.objects.create_user(name, password="a long test password")
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def send(stack_id, event, **extra):
    return handle_event({"stackId": stack_id, "event": event, **extra}, actor="tester", source="api")


@pytest.fixture
def ran():
    """A stack that ran WORK (a job that failed once and then printed), went to RUN and back to WORK."""
    save_machine("m", MACHINE % "{executor: sleep, config: {seconds: 0, fail: 1}}", actor="t")
    send("s1", "LAUNCH", machine="m")
    job = Stack.objects.get(key="s1").current_tasks().get(name="job")
    run_task(job.id)
    send("s1", "TASK_COMPLETED", task={"name": "job"})
    send("s1", "TASK_COMPLETED", task={"name": "approve"})
    send("s1", "AGAIN")
    return Stack.objects.get(key="s1")


def test_it_shows_visits_attempts_the_path_and_anchors(ran):
    html = client_for("vera", "viewer").get(reverse("stacks-detail", args=["s1"])).content.decode()
    assert 'id="run-table"' in html and html.count('class="visit"') == 3  # WORK, RUN, WORK again
    failed = TaskAttempt.objects.get(outcome="failed")
    assert f'id="attempt-{failed.pk}"' in html and "failed on purpose" in html
    item = html[html.index(f'id="attempt-{failed.pk}"'):]
    assert '<details class="attempt-details" open>' in item[:200]  # a failed attempt's output is open
    assert 'id="event-' in html and 'id="run-data"' in html and 'id="timeline-slider"' in html
    assert "visited state (bold outline)" in html  # the legend explains the path
    if diagrams.dot_available():
        assert 'class="edge transition followed"' in html or "followed" in html
    assert 'data-col="phase"' in html and ">waiting<" in html


def test_it_serves_the_scrubbers_frames_for_live_and_removed_stacks(ran):
    viewer = client_for("vera", "viewer")
    frames = viewer.get(reverse("stacks-replay", args=["s1"])).json()["frames"]
    assert [f["state"] for f in frames][-1] == "WORK" and frames[0]["entered"] == ["WORK"]
    assert frames[-1]["path"]["edges"] == {"INIT>WORK": 1, "WORK>RUN": 1, "RUN>WORK": 1}
    assert viewer.get(reverse("stacks-replay", args=["nope"])).status_code == 404
    send("s1", "TASK_COMPLETED", task={"name": "job"})
    send("s1", "TASK_COMPLETED", task={"name": "approve"})
    send("s1", "DESTROY")
    removed = Stack.objects.get(key="s1")
    assert removed.removed
    page = viewer.get(reverse("stacks-removed-detail", args=[removed.pk])).content.decode()
    assert 'id="timeline-slider"' in page and "failed on purpose" in page
    frames = viewer.get(reverse("stacks-removed-replay", args=[removed.pk])).json()["frames"]
    assert frames[-1]["removed"] is True and frames[-1]["state"] == "DONE"


def test_it_retries_one_failed_task_from_the_page():
    save_machine("m", MACHINE % (PRINTS % 1), actor="t")
    send("s2", "LAUNCH", machine="m")
    send("s2", "TASK_ERROR", task={"name": "approve"}, description="nope")
    send("s2", "TASK_ERROR", task={"name": "job"}, description="broke")
    operator = client_for("otto", "operator")
    page = operator.get(reverse("stacks-detail", args=["s2"])).content.decode()
    assert page.count("Retry this task") >= 2
    url = reverse("stacks-retry-task", args=["s2"])
    answer = operator.post(url, {"task": "approve"}, HTTP_ACCEPT="application/json")
    assert answer.status_code == 200 and answer.json()["ok"]
    statuses = {t.name: t.status for t in Stack.objects.get(key="s2").current_tasks()}
    assert statuses == {"job": "ERROR", "approve": "PENDING"}
    again = operator.post(url, {"task": "approve"}, HTTP_ACCEPT="application/json")
    assert again.status_code == 409 and "not failed" in again.json()["error"]
    assert operator.post(url, {}, HTTP_ACCEPT="application/json").status_code == 400
    bad = operator.post(url, {"task": "no such task!"}, HTTP_ACCEPT="application/json")
    assert bad.status_code == 400 and bad.json()["error"]
    viewer = client_for("vera", "viewer")
    assert viewer.post(url, {"task": "job"}).status_code == 403


def test_it_draws_the_path_without_colour_alone_and_caches_per_path():
    machine = save_machine("simple", SIMPLE_MACHINE, actor="t").version.spec
    path = diagrams.RunPath.of({"INIT>PROVISION": 1, "PROVISION>RUN": 2, "RUN>PROVISION": 1}, ["PROVISION"])
    dot = diagrams.to_dot(machine, highlight="RUN", path=path)
    assert 'class="state failed"' in dot and "dashed" in dot  # failed: dashed outline
    assert 'class="state current visited"' in dot
    assert "NEXT ×2" in dot and 'class="transition automatic followed"' in dot and "penwidth=3" in dot
    assert 'id="edge-RUN--PROVISION"' in dot
    plain = diagrams.to_dot(machine, highlight="RUN")
    assert "followed" not in plain and "edge-" not in plain
    assert path.cache_key() != diagrams.RunPath().cache_key()
    assert "visited" not in {i.css_class for i in diagrams.legend(stack=False)}


def test_it_shows_attempts_read_only_in_the_admin(ran):
    user = User.objects.create_user("staff-vera", password="a long test password", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    attempt = TaskAttempt.objects.get(outcome="failed")
    listing = client.get("/admin/stacks/taskattempt/")
    assert listing.status_code == 200 and "failed" in listing.content.decode()
    page = client.get(f"/admin/stacks/taskattempt/{attempt.pk}/change/")
    assert page.status_code == 200 and "failed on purpose" in page.content.decode()
    assert client.post(f"/admin/stacks/taskattempt/{attempt.pk}/delete/").status_code == 403
