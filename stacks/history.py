"""A stack's history read for replay: StackEvent rows → `stacks.replay` entries → frames.

`frames(stack)` feeds the stack page's timeline scrubber; `verify(stack)` (and `manage.py
verify_history`) checks that replaying the history gives the stored stack.
"""

from __future__ import annotations

from machines_app.models import MachineVersion
from stacks import replay
from stacks.models import Stack, StackEvent


def entries(stack: Stack) -> list[replay.Entry]:
    """The stack's history entries, oldest first, in one query."""
    rows = (
        StackEvent.objects.filter(stack=stack)
        .order_by("created_at", "id")
        .values_list("id", "event", "outcome", "metadata", "task_ref", "machine_version__number", "created_at",
                     "from_state", "to_state")
    )
    return [
        replay.Entry(id=pk, event=event, outcome=outcome, metadata=metadata or {}, task=task or "",
                     version=number, created_at=_iso(created), from_state=from_state, to_state=to_state)
        for pk, event, outcome, metadata, task, number, created, from_state, to_state in rows
    ]


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def frames(stack: Stack, found: list[replay.Entry] | None = None) -> list[dict]:
    """One frame per history entry: the stack as it was right after it (see `stacks.replay`)."""
    found = entries(stack) if found is None else found
    specs: dict[int, object] = {stack.machine_version.number: stack.machine_version.spec}

    def machine(number):
        if number not in specs:
            version = MachineVersion.objects.filter(machine_id=stack.machine_id, number=number).first()
            specs[number] = (version or stack.machine_version).spec
        return specs[number]

    first = next((e.version for e in found if e.version is not None), stack.machine_version.number)
    return replay.replay(found, stack.key, machine, first)


def verify(stack: Stack) -> list[str]:
    """Sentences for every way the replayed history differs from the stored stack (none: it agrees)."""
    found = frames(stack)
    tasks = [(t.name, t.status) for t in stack.current_tasks()]
    return replay.differences(found[-1] if found else None, state=stack.state, previous_state=stack.previous_state,
                              metadata=stack.metadata, tasks=tasks, removed=stack.removed)
