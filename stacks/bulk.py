"""One action for many stacks, each through `handle_event`, reported per stack.

Used by the admin's actions and the dashboard's bulk actions: every stack is its own event (its own
transaction, its own history entry, its own refusal), so one stack that refuses never stops the
others, and the report says which stacks were changed and why the others were not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from machines_app.spec.model import RETRY_FAILED_TASKS, RETRY_PENDING_TASKS
from stacks import services
from stacks.models import Stack

RETRY_FAILED, RETRY_PENDING, SEND_EVENT, UPDATE_METADATA = "retry_failed", "retry_pending", "event", "metadata"
ACTIONS = {
    RETRY_FAILED: "Retry failed tasks",
    RETRY_PENDING: "Retry pending tasks",
    SEND_EVENT: "Send an event",
    UPDATE_METADATA: "Update metadata",
}
LIMIT = 1000  # stacks per bulk action: each is its own transaction (about a millisecond or two)


@dataclass(frozen=True)
class Outcome:
    stack: str
    error: str | None  # None: done
    detail: str = ""  # what was done, e.g. "RUN → GONE"

    @property
    def ok(self) -> bool:
        return self.error is None


def for_each_stack(stacks: Iterable[Stack],
                   call: Callable[[str], services.EventResult]) -> list[tuple[str, str | None]]:
    """Run one service call per stack; removed stacks are skipped (their id may belong to a new stack)."""
    return [(o.stack, o.error) for o in run_each(stacks, call)]


def run_each(stacks: Iterable[Stack], call: Callable[[str], services.EventResult]) -> list[Outcome]:
    outcomes = []
    for stack in stacks:
        if stack.removed:
            outcomes.append(Outcome(stack.key, "this stack was removed; nothing was done"))
            continue
        result = call(stack.key)
        if result.ok:
            state = result.body.get("state")
            detail = f"{stack.state} → {state}" if state and state != stack.state else ""
            outcomes.append(Outcome(stack.key, None, detail))
        else:
            outcomes.append(Outcome(stack.key, result.body.get("error", "refused")))
    return outcomes


def call_for(action: str, *, actor, source: str, event: str = "",
             metadata: Mapping | None = None) -> Callable[[str], services.EventResult]:
    """The service call one bulk action makes for each stack."""
    if action == RETRY_FAILED:
        return lambda key: services.send(key, RETRY_FAILED_TASKS, actor=actor, source=source)
    if action == RETRY_PENDING:
        return lambda key: services.send(key, RETRY_PENDING_TASKS, actor=actor, source=source)
    if action == SEND_EVENT:
        return lambda key: services.send(key, event, actor=actor, source=source)
    if action == UPDATE_METADATA:
        return lambda key: services.update_metadata(key, dict(metadata or {}), actor=actor, source=source)
    raise ValueError(f"unknown bulk action {action!r}; actions: {', '.join(ACTIONS)}")


def run(action: str, stacks: Iterable[Stack], *, actor, source: str, event: str = "",
        metadata: Mapping | None = None) -> list[Outcome]:
    """`action` for each of `stacks`, through `handle_event`; one Outcome per stack."""
    return run_each(stacks, call_for(action, actor=actor, source=source, event=event, metadata=metadata))
