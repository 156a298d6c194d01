"""Notifications out: notify: rules in the machine, deliveries recorded with the event, a real RQ worker
sending signed webhooks (retried after a 500), the outbound guard, and the stack page's list."""

from __future__ import annotations

import hashlib
import hmac
import json

import django_rq
import pytest
from rq import SimpleWorker

from machines_app import spec
from machines_app.services import save_machine
from stacks.notifications import jobs, targets
from stacks.notifications.models import NotificationDelivery, NotificationTarget
from stacks.services import handle_event
from tests.conftest import SIMPLE_MACHINE
from tests.listener import Listener

pytestmark = pytest.mark.postgres

NOTIFY = """
notify:
  - {on: task_failed, target: ops-hook}
  - {on: entered, state: RUN, target: ops-hook}
  - {on: removed, target: ops-hook}
"""
SECRET = "a-shared-secret"


# --- the machine format (pure) --------------------------------------------------------------------


def test_it_accepts_notify_rules_and_machines_without_them():
    assert spec.validate(SIMPLE_MACHINE).machine.notify == ()
    rules = spec.validate(SIMPLE_MACHINE + NOTIFY).machine.notify
    assert [(r.on, r.state, r.target) for r in rules] == [
        ("task_failed", None, "ops-hook"), ("entered", "RUN", "ops-hook"), ("removed", None, "ops-hook")]


@pytest.mark.parametrize(("rules", "path", "message"), [
    ("notify: {on: removed}", "notify", "'notify' must be a list of rules"),
    ("notify: [{on: removed}]", "notify[0].target", "missing 'target'"),
    ("notify: [{on: failed, target: a}]", "notify[0].on", "must be one of task_failed, entered, removed"),
    ("notify: [{on: entered, target: a}]", "notify[0].state", "name the state, e.g. state: RUN"),
    ("notify: [{on: entered, state: RUNN, target: a}]", "notify[0].state", "did you mean 'RUN'?"),
    ("notify: [{on: removed, state: RUN, target: a}]", "notify[0].state", "only goes with on: entered"),
    ("notify: [{on: removed, target: 'https://x'}]", "notify[0].target", "target name 'https://x' is not allowed"),
    ("notify: [{on: removed, target: a, secret: s}]", "notify[0].secret", "unknown key 'secret'"),
])
def test_it_explains_bad_notify_rules_with_path_and_line(rules, path, message):
    errors = spec.validate(SIMPLE_MACHINE + rules + "\n").errors
    assert [e.path for e in errors] == [path], errors
    assert message in errors[0].message and errors[0].line == SIMPLE_MACHINE.count("\n") + 1


# --- deliveries recorded with the event -------------------------------------------------------------


@pytest.fixture
def notifying_machine(db):
    return save_machine("simple", SIMPLE_MACHINE + NOTIFY, actor="tests", source="tests").version


def send(stack_id, event, **extra):
    return handle_event({"stackId": stack_id, "event": event, **extra}, actor="tester", source="api")


def fail_task(stack_id, name="db"):
    return send(stack_id, "TASK_ERROR", task={"name": name}, description="disk full")


def test_it_records_a_delivery_per_triggered_rule_and_enqueues_after_commit(
        notifying_machine, django_capture_on_commit_callbacks, monkeypatch):
    enqueued = []
    monkeypatch.setattr(jobs, "enqueue", enqueued.append)
    send("feature-1", "LAUNCH", machine="simple")
    assert not NotificationDelivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        fail_task("feature-1")
    (delivery,) = NotificationDelivery.objects.all()
    assert enqueued == []  # nothing leaves before commit
    for callback in callbacks:
        callback()
    assert enqueued == [[delivery.pk]]
    assert (delivery.trigger, delivery.state, delivery.target_name, delivery.status) == (
        "task_failed", "PROVISION", "ops-hook", "pending")
    body = delivery.payload
    assert body["stack"]["id"] == "feature-1" and body["event"]["event"] == "TASK_ERROR"
    assert body["failedTasks"][0]["name"] == "db" and body["failedTasks"][0]["errorMessage"] == "disk full"
    assert body["url"] == "http://127.0.0.1:8000/stacks/feature-1/"
    assert body["text"] == "Stack feature-1 (simple): db (disk full) failed in state PROVISION."


def test_it_notifies_entering_a_state_and_removal(notifying_machine, settings):
    settings.CLOUDSEAM_PUBLIC_URL = "https://cloudseam.example.com"
    send("feature-2", "LAUNCH", machine="simple")
    send("feature-2", "TASK_COMPLETED", task={"name": "db"})
    send("feature-2", "TASK_COMPLETED", task={"name": "cert"})  # NEXT → RUN
    send("feature-2", "DESTROY")
    send("feature-2", "TASK_COMPLETED", task={"name": "nuke"})  # TEARDOWN done → removed
    got = list(NotificationDelivery.objects.order_by("pk").values_list("trigger", "state"))
    assert got == [("entered", "RUN"), ("removed", "TEARDOWN")]
    removed = NotificationDelivery.objects.get(trigger="removed")
    assert removed.payload["stack"]["removed"] is True
    assert removed.payload["url"] == f"https://cloudseam.example.com/stacks/removed/{removed.stack_id}/"


def test_it_records_nothing_for_rejected_events_or_machines_without_rules(simple_machine):
    send("quiet", "LAUNCH", machine="simple")
    fail_task("quiet")
    assert send("quiet", "LAUNCH").status == 409
    assert not NotificationDelivery.objects.exists()


# --- sending: a real RQ worker, a real listener -------------------------------------------------------


@pytest.fixture
def worker_queue(settings):
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ("127.0.0.1",)
    settings.CLOUDSEAM_NOTIFY_RETRY_INTERVALS = (0, 0)
    settings.CLOUDSEAM_NOTIFY_TIMEOUT = 5
    queue = django_rq.get_queue("default")
    queue.empty()
    yield queue
    queue.empty()


def run_worker(queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def make_target(url: str, **extra) -> NotificationTarget:
    return NotificationTarget.objects.create(name="ops-hook", url=url, secret=SECRET, **extra)


def test_it_sends_a_signed_body_and_retries_after_a_500(
        notifying_machine, worker_queue, django_capture_on_commit_callbacks):
    with Listener([(500, {}, b"try later"), (204, {}, b"")]) as listener:
        make_target(listener.url("/cloudseam"))
        send("feature-3", "LAUNCH", machine="simple")
        with django_capture_on_commit_callbacks(execute=True):
            fail_task("feature-3")
        run_worker(worker_queue)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.status_code) == ("sent", 2, 204)
    assert [a["statusCode"] for a in delivery.answers] == [500, 204]
    assert delivery.answers[0]["error"] == "answered 500: try later"
    assert len(listener.received) == 2
    for attempt, request in enumerate(listener.received, start=1):
        headers, raw = request["headers"], request["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-CloudSeam-Signature-256"], expected)
        body = json.loads(raw)
        assert body["attempt"] == attempt and body["deliveryId"] == delivery.pk
        assert str(body["sentAt"]) == headers["X-CloudSeam-Timestamp"]
        assert headers["X-CloudSeam-Event"] == "task_failed" and headers["Content-Type"] == "application/json"
        assert body["stack"]["id"] == "feature-3" and body["type"] == "task_failed"


def test_it_gives_up_after_the_last_retry(notifying_machine, worker_queue, django_capture_on_commit_callbacks):
    with Listener([(503, {}, b"down")]) as listener:
        make_target(listener.url())
        send("feature-4", "LAUNCH", machine="simple")
        with django_capture_on_commit_callbacks(execute=True):
            fail_task("feature-4")
        run_worker(worker_queue)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, len(listener.received)) == ("failed", 3, 3)
    assert delivery.finished_at is not None


def test_it_does_not_retry_a_client_error_or_an_unknown_target(
        notifying_machine, worker_queue, django_capture_on_commit_callbacks):
    send("feature-5", "LAUNCH", machine="simple")
    with django_capture_on_commit_callbacks(execute=True):
        fail_task("feature-5")
    run_worker(worker_queue)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error.startswith("there is no enabled notification target named ops-hook")
    with Listener([(404, {}, b"no such hook")]) as listener:
        make_target(listener.url())
        assert jobs.deliver(NotificationDelivery.objects.create(
            stack_key="x", target_name="ops-hook", trigger="removed", payload={}).pk) == "failed"
    assert len(listener.received) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/",
                                 "http://0x7f000001/", "http://[::1]/", "http://localhost/"])
def test_it_refuses_internal_webhook_urls(db, settings, url):
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ()
    make_target(url)
    delivery = NotificationDelivery.objects.create(stack_key="x", target_name="ops-hook", trigger="removed",
                                                   payload={})
    answer = targets.send(delivery, 1)
    assert answer.ok is False and answer.retry is False and answer.error.startswith("refused: ")


def test_it_refuses_a_webhook_redirect_to_loopback(db, settings):
    settings.CLOUDSEAM_OUTBOUND_ALLOW = ("127.0.0.1",)
    with Listener([(307, {"Location": "http://127.0.0.2:9/"}, b"")]) as listener:
        make_target(listener.url())
        delivery = NotificationDelivery.objects.create(stack_key="x", target_name="ops-hook", trigger="removed",
                                                       payload={})
        answer = targets.send(delivery, 1)
    assert answer.ok is False and "127.0.0.2" in answer.error and len(listener.received) == 1


def test_it_sends_chat_targets_through_apprise(db, monkeypatch):
    import apprise

    sent = []
    monkeypatch.setattr(apprise.Apprise, "notify", lambda self, **kw: sent.append(kw) or True)
    NotificationTarget.objects.create(name="team-chat", kind="apprise", url="slack://T1/B2/C3")
    delivery = NotificationDelivery.objects.create(
        stack_key="x", target_name="team-chat", trigger="removed",
        payload={"text": "Stack x (simple) was removed (final state GONE).", "url": "http://cs/stacks/removed/1/"})
    assert targets.send(delivery, 1).ok
    assert sent[0]["title"].startswith("CloudSeam: Stack x") and "http://cs/stacks/removed/1/" in sent[0]["body"]


def test_it_refuses_apprise_targets_that_would_bypass_the_guard(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        NotificationTarget(name="sneaky", kind="apprise", url="json://10.0.0.1/").full_clean()
    with pytest.raises(ValidationError):
        NotificationTarget(name="bad", kind="webhook", url="ftp://example.com/", secret="s").full_clean()


# --- where people see them ------------------------------------------------------------------------------


def test_it_lists_the_deliveries_on_the_stack_page(notifying_machine, client, make_user):
    send("feature-6", "LAUNCH", machine="simple")
    fail_task("feature-6")
    NotificationDelivery.objects.update(status="failed", attempts=3, status_code=503, error="answered 503: down")
    client.force_login(make_user("vera", "viewer"))
    page = client.get("/stacks/feature-6/").content.decode()
    assert 'id="notifications"' in page and "ops-hook" in page and "answered 503: down" in page


def test_it_leaves_the_stack_page_alone_without_deliveries(simple_machine, client, make_user):
    send("feature-7", "LAUNCH", machine="simple")
    client.force_login(make_user("vera", "viewer"))
    assert 'id="notifications"' not in client.get("/stacks/feature-7/").content.decode()
