"""Which `notify:` rules an applied event triggers, as deliveries written in the event's own transaction.

Called once by `stacks.services` for every applied event. A machine without rules costs nothing (no
query); a match costs one INSERT, and the jobs are enqueued only after commit (`stacks.effects`), so
a rolled-back event never notifies anyone and a committed one always leaves a delivery to look at.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from machines_app.spec import Machine
from machines_app.spec.model import ENTERED, REMOVED, TASK_ERROR, TASK_FAILED
from stacks import effects
from stacks.models import Stack, StackEvent
from stacks.notifications.models import NotificationDelivery
from stacks.snapshots import event_json


def what_happened(event: str, transitions, removed: bool, state: str) -> list[tuple[str, str]]:
    """(trigger, state) pairs, in order: a failed task, each state entered (NEXT chains included), removal."""
    happened = [(TASK_FAILED, state)] if event == TASK_ERROR else []
    happened += [(ENTERED, t.to_state) for t in transitions]
    if removed:
        happened.append((REMOVED, state))
    return happened


def schedule(machine: Machine, stack: Stack, snapshot: dict, record: StackEvent, outcome) -> None:
    """Record a delivery for every rule this event triggers; their jobs start after commit."""
    if not machine.notify:
        return
    wanted: dict[tuple[str, str, str], None] = {}
    for trigger, state in what_happened(record.event, outcome.transitions, outcome.removed, stack.state):
        for rule in machine.notify:
            if rule.matches(trigger, state):
                wanted[(rule.target, trigger, state)] = None
    if not wanted:
        return
    event, link = event_json(record), page_url(stack)
    deliveries = NotificationDelivery.objects.bulk_create(
        NotificationDelivery(stack=stack, stack_key=stack.key, target_name=target, trigger=trigger, state=state,
                             payload=payload(trigger, state, snapshot, event, link))
        for target, trigger, state in wanted
    )
    effects.after_commit_notifications([d.pk for d in deliveries])


def page_url(stack: Stack) -> str:
    """An absolute link to the stack's page (CLOUDSEAM_PUBLIC_URL); a removed stack's own record page."""
    path = (reverse("stacks-removed-detail", kwargs={"pk": stack.pk}) if stack.removed_at
            else reverse("stacks-detail", kwargs={"stack_id": stack.key}))
    return settings.CLOUDSEAM_PUBLIC_URL + path


def payload(trigger: str, state: str, snapshot: dict, event: dict, link: str) -> dict:
    """The JSON every webhook target receives (plus deliveryId, attempt and sentAt when it is sent)."""
    return {
        "type": trigger,
        "text": summary(trigger, state, snapshot),
        "state": state,
        "stack": snapshot,
        "event": event,
        "failedTasks": [t for t in snapshot.get("tasks", ()) if t.get("status") == "ERROR"],
        "url": link,
    }


def summary(trigger: str, state: str, snapshot: dict) -> str:
    """One sentence for chat and e-mail targets."""
    key, machine = snapshot.get("id"), snapshot.get("machine")
    if trigger == TASK_FAILED:
        failed = [t for t in snapshot.get("tasks", ()) if t.get("status") == "ERROR"]
        what = ", ".join(f"{t['name']} ({(t.get('errorMessage') or 'failed')[:200]})" for t in failed) or "a task"
        return f"Stack {key} ({machine}): {what} failed in state {state}."
    if trigger == ENTERED:
        return f"Stack {key} ({machine}) entered state {state}."
    return f"Stack {key} ({machine}) was removed (final state {state})."
