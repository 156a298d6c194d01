"""The hot paths' reads, built once per process (cloudseam_site.prepared_sql says why).

`handle_event` locks the stack's row and its current task rows; a job that has claimed its task
reads the stack's current tasks with the stack. These are the same statements as the querysets
named in each docstring, without compiling them on every event or task.
"""

from __future__ import annotations

from cloudseam_site.prepared_sql import DB, NUMBER, TEXT, select
from machines_app.models import Machine, MachineVersion
from stacks.models import Stack, Task

_STACK_FIELDS = [f.attname for f in Stack._meta.concrete_fields]
_TASK_FIELDS = [f.attname for f in Task._meta.concrete_fields]
_VERSION_FIELDS = [f.attname for f in MachineVersion._meta.concrete_fields if f.name != "yaml_text"]


def lock_active_stack(key: str) -> Stack | None:
    """The active stack with this key, its row locked (only its row), with machine and version attached.

    Same as `select_for_update(of=("self",)).select_related("machine", "machine_version")`
    without the version's YAML text (`MachineVersion.spec` is cached by content hash) and with
    the machine's name only (anything else of the machine loads when asked for).
    """
    rows = select("stack", lambda: (
        Stack.objects.select_for_update(of=("self",))
        .filter(key=TEXT[0], removed_at__isnull=True)
        .values_list(*_STACK_FIELDS, "machine__name", *(f"machine_version__{f}" for f in _VERSION_FIELDS))[:1]
    ), TEXT[:1], key)
    if not rows:
        return None
    row = rows[0]
    stack = Stack.from_db(DB, _STACK_FIELDS, row[:len(_STACK_FIELDS)])
    machine = Machine.from_db(DB, ["id", "name"], (stack.machine_id, row[len(_STACK_FIELDS)]))
    version = MachineVersion.from_db(DB, _VERSION_FIELDS, row[len(_STACK_FIELDS) + 1:])
    Stack.machine.field.set_cached_value(stack, machine)
    Stack.machine_version.field.set_cached_value(stack, version)
    return stack


def lock_current_tasks(stack_pk: int) -> list[Task]:
    """The stack's current task rows in order, locked (a claiming worker waits for this event).

    Same as `stack.tasks.filter(current=True).order_by("position").select_for_update()`.
    """
    rows = select("tasks", lambda: (
        Task.objects.select_for_update().filter(stack_id=NUMBER[0], current=True).order_by("position")
        .values_list(*_TASK_FIELDS)
    ), NUMBER[:1], stack_pk)
    return [Task.from_db(DB, _TASK_FIELDS, row) for row in rows]


_MACHINE_FIELDS = [f.attname for f in Machine._meta.concrete_fields]


def current_tasks_with_stack(stack_pk: int) -> list[Task]:
    """The stack's current task rows in order, each with the stack, its machine and version attached.

    Same as `Task.objects.filter(stack_id=…, current=True).select_related("stack__machine",
    "stack__machine_version").defer("stack__machine_version__yaml_text").order_by("position")`,
    with one Stack object shared by all rows.
    """
    rows = select("tasks-with-stack", lambda: (
        Task.objects.filter(stack_id=NUMBER[0], current=True).order_by("position")
        .values_list(*_TASK_FIELDS, *(f"stack__{f}" for f in _STACK_FIELDS),
                     *(f"stack__machine__{f}" for f in _MACHINE_FIELDS),
                     *(f"stack__machine_version__{f}" for f in _VERSION_FIELDS))
    ), NUMBER[:1], stack_pk)
    if not rows:
        return []
    first = rows[0]
    at = len(_TASK_FIELDS)
    stack = Stack.from_db(DB, _STACK_FIELDS, first[at:at + len(_STACK_FIELDS)])
    at += len(_STACK_FIELDS)
    machine = Machine.from_db(DB, _MACHINE_FIELDS, first[at:at + len(_MACHINE_FIELDS)])
    version = MachineVersion.from_db(DB, _VERSION_FIELDS, first[at + len(_MACHINE_FIELDS):])
    Stack.machine.field.set_cached_value(stack, machine)
    Stack.machine_version.field.set_cached_value(stack, version)
    tasks = []
    for row in rows:
        task = Task.from_db(DB, _TASK_FIELDS, row[:len(_TASK_FIELDS)])
        Task.stack.field.set_cached_value(task, stack)
        tasks.append(task)
    return tasks
