"""Stack lifetimes: the machine's `lifetime` rule, when a stack expires, and the check that ends it once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from machines_app import spec
from machines_app.services import save_machine
from stacks import lifetimes
from stacks.models import Stack, StackEvent
from stacks.runtime import expiry as check
from stacks.services import handle_event, update_metadata
from tests.support import make_user

pytestmark = pytest.mark.postgres

EPHEMERAL = """\
version: 1
events: [LAUNCH, DESTROY, NOTE]
lifetime: {ttl: 7d, idle: 2d, event: DESTROY}
states:
  INIT:
    on:
      LAUNCH: [{action: advance, state: RUN}]
  RUN:
    on:
      DESTROY: [{action: advance, state: GONE}]
      NOTE: [{action: no-op}]
  GONE:
    terminal: true
"""


def errors_of(text: str) -> list[str]:
    return [p.format() for p in spec.validate(text).errors]


# --- the rule (pure) ------------------------------------------------------------------------------------


def test_it_reads_a_lifetime():
    lifetime = spec.load(EPHEMERAL).lifetime
    assert (lifetime.ttl, lifetime.idle, lifetime.event) == (7 * 86400, 2 * 86400, "DESTROY")


def test_it_defaults_the_event_to_destroy():
    assert spec.load(EPHEMERAL.replace(", event: DESTROY", "")).lifetime.event == "DESTROY"


@pytest.mark.parametrize("bad", ["7", "7 days", "1.5h", "0d", "-1d", "7w"])
def test_it_refuses_a_duration_it_cannot_read(bad):
    (error,) = errors_of(EPHEMERAL.replace("ttl: 7d", f"ttl: '{bad}'"))
    assert "lifetime.ttl" in error and "e.g. 30m, 12h, 7d" in error and "line 3" in error


def test_it_refuses_an_event_the_machine_does_not_declare():
    (error,) = errors_of(EPHEMERAL.replace("event: DESTROY", "event: DESTROX"))
    assert "lifetime.event" in error and "did you mean 'DESTROY'" in error


def test_it_refuses_a_lifetime_without_a_duration_and_unknown_keys():
    errors = errors_of(EPHEMERAL.replace("{ttl: 7d, idle: 2d, event: DESTROY}", "{event: DESTROY, ttl_: 1d}"))
    assert any("needs 'ttl', 'idle' or both" in e for e in errors)
    assert any("unknown key 'ttl_'" in e for e in errors)


# --- expiry ---------------------------------------------------------------------------------------------


@pytest.fixture
def ephemeral(db):
    return save_machine("ephemeral", EPHEMERAL, actor="tests", source="tests").version


def launch(stack_id="tmp-1", machine="ephemeral", **extra):
    result = handle_event({"stackId": stack_id, "event": "LAUNCH", "machine": machine, **extra},
                          actor="tester", source="api")
    assert result.ok, result.body
    return Stack.objects.get(key=stack_id, removed_at__isnull=True)


def age(stack: Stack, *, created: timedelta, updated: timedelta | None = None) -> Stack:
    now = timezone.now()
    Stack.objects.filter(pk=stack.pk).update(created_at=now - created, updated_at=now - (updated or created))
    return Stack.objects.select_related("machine", "machine_version").get(pk=stack.pk)


def test_it_expires_by_the_earlier_of_ttl_and_idle(ephemeral):
    stack = age(launch(), created=timedelta(days=3), updated=timedelta(days=1))
    expiry = lifetimes.expiry_of(stack)
    assert expiry.event == "DESTROY" and expiry.why.startswith("idle 2d")
    assert expiry.at == stack.updated_at + timedelta(days=2)
    assert lifetimes.expiry_of(age(stack, created=timedelta(days=6, hours=23), updated=timedelta(hours=1))).why \
        .startswith("ttl 7d")


def test_it_lets_metadata_set_the_expiry(ephemeral, simple_machine):
    stack = launch(metadata={"expiresAt": "2030-01-02T03:04:05Z"})
    assert lifetimes.expiry_of(stack).at.isoformat() == "2030-01-02T03:04:05+00:00"
    other = launch("plain", machine="simple", metadata={"ttl": "12h"})  # no lifetime in its machine
    expiry = lifetimes.expiry_of(other)
    assert expiry.at == other.created_at + timedelta(hours=12) and expiry.event == "DESTROY"
    assert expiry.extend_label == "12h"


def test_it_shows_the_expiry_in_the_snapshot(ephemeral):
    body = handle_event({"stackId": "s", "event": "LAUNCH", "machine": "ephemeral"}, actor="t", source="api").body
    assert body["expiresAt"].endswith("Z")


def test_it_destroys_an_expired_stack_through_handle_event(ephemeral):
    stack = age(launch(), created=timedelta(days=8))
    fresh = launch("fresh")
    assert check.expire_stacks() == 1
    assert Stack.objects.get(pk=stack.pk).removed
    assert not Stack.objects.get(pk=fresh.pk).removed
    entry = StackEvent.objects.get(stack=stack, event="DESTROY")
    assert (entry.source, entry.actor, entry.outcome) == ("system", "lifetime", "applied")
    assert entry.message_id.startswith(f"expire-{stack.pk}-")
    assert check.expire_stacks() == 0


def test_it_waits_while_the_state_does_not_accept_the_event(ephemeral):
    stack = age(launch(), created=timedelta(days=8))
    Stack.objects.filter(pk=stack.pk).update(state="INIT")  # INIT does not accept DESTROY
    assert check.expire_stacks() == 0
    assert not StackEvent.objects.filter(stack=stack, event="DESTROY").exists()


def test_it_extends_by_the_ttl_through_update_metadata(ephemeral):
    stack = age(launch(), created=timedelta(days=8))
    before = timezone.now()
    until = lifetimes.extended_until(stack)
    assert until >= before + timedelta(days=7)
    result = update_metadata(stack.key, {"expiresAt": until.isoformat()}, actor="otto", source="ui")
    assert result.ok
    stack.refresh_from_db()
    expiry = lifetimes.expiry_of(stack)
    assert expiry.why == "expiresAt in metadata" and expiry.at > before + timedelta(days=6, hours=23)
    assert lifetimes._metadata_time(stack.metadata["expiresAt"]) >= before + timedelta(days=7) - timedelta(seconds=1)
    assert StackEvent.objects.filter(stack=stack, event="UPDATE_METADATA", actor="otto").exists()
    assert check.expire_stacks() == 0


def test_it_extends_from_the_page_for_operators_only(ephemeral, client):
    stack = launch()
    client.force_login(make_user("vera", "viewer"))
    assert client.post(f"/stacks/{stack.key}/extend/").status_code == 403
    client.force_login(make_user("otto", "operator"))
    response = client.post(f"/stacks/{stack.key}/extend/")
    assert response.status_code == 302
    assert "expiresAt" in Stack.objects.get(pk=stack.pk).metadata
    page = client.get(f"/stacks/{stack.key}/").content.decode()
    assert "Expires" in page and "Extend by 7d" in page


def _threads(count, target):
    errors, barrier = [], threading.Barrier(count)

    def run(i):
        try:
            barrier.wait(10)
            target(i)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_it_destroys_an_expired_stack_exactly_once_with_three_workers(ephemeral):
    stacks = [age(launch(f"old-{i}"), created=timedelta(days=8)) for i in range(5)]
    sent = []
    _threads(3, lambda i: sent.append(check.expire_stacks()))
    assert sum(sent) == 5
    for stack in stacks:
        assert Stack.objects.get(pk=stack.pk).removed
        events = StackEvent.objects.filter(stack_key=stack.key, event="DESTROY")
        assert [(e.outcome, e.actor) for e in events] == [("applied", "lifetime")]


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_repeated_expiry_from_the_first_result(ephemeral):
    stack = age(launch(), created=timedelta(days=8))
    expiry = lifetimes.expiry_of(stack)
    message = {"stackId": stack.key, "event": "DESTROY", "id": expiry.message_id(stack)}
    first = handle_event(message, actor="lifetime", source="system")
    again = handle_event(message, actor="lifetime", source="system")
    assert first.ok and again.repeated and again.body == first.body
    assert StackEvent.objects.filter(stack_key=stack.key, event="DESTROY").count() == 1


def test_it_keeps_bad_metadata_from_breaking_the_check(ephemeral):
    stack = launch(metadata={"ttl": "soon", "expiresAt": "tomorrow"})
    update_metadata(stack.key, {"ttl": "forever"}, actor="t", source="api")
    stack.refresh_from_db()
    assert lifetimes.expiry_of(stack).why.startswith("idle 2d")
    assert check.expire_stacks() == 0
