"""The stacks in flight on a machine, read for `machines_app.impact`.

Read through the reverse relations `Machine.stacks` and `Stack.tasks` so that machines_app never
imports the stacks app (imports run stacks -> machines_app). One query for the stacks and their
current task names (a LEFT JOIN on the current tasks), one for the versions they are pinned to:
the editor asks again after every pause in typing, with up to tens of thousands of stacks.
"""

from __future__ import annotations

from django.db.models import FilteredRelation, Q

from machines_app import impact, spec
from machines_app.models import Machine, MachineVersion


def pinned_stacks(machine: Machine, *, exclude_version: MachineVersion | None = None,
                  ) -> list[tuple[spec.Machine, list[impact.StackGroup]]]:
    """Active stacks of `machine` grouped by the parsed version each is pinned to, then by state and tasks."""
    stacks = machine.stacks.filter(removed_at__isnull=True)
    if exclude_version is not None:
        stacks = stacks.exclude(machine_version=exclude_version)
    rows = (
        stacks.annotate(current_task=FilteredRelation("tasks", condition=Q(tasks__current=True)))
        .order_by()  # no sort in the database: stacks are grouped here, task names put in order below
        .values_list("pk", "machine_version_id", "key", "state", "current_task__position", "current_task__name")
    )
    keys: dict[tuple[int, str, tuple[str, ...]], list[str]] = {}
    for version_id, key, state, tasks in _with_tasks(rows):
        keys.setdefault((version_id, state, tasks), []).append(key)
    versions = MachineVersion.objects.filter(pk__in={group[0] for group in keys}).only("number", "yaml_text",
                                                                                     "content_hash")
    by_id = {version.pk: version for version in versions}
    grouped: dict[int, list[impact.StackGroup]] = {}
    for (version_id, state, tasks), group_keys in keys.items():
        group = impact.StackGroup(state, tasks, by_id[version_id].number, group_keys)
        grouped.setdefault(version_id, []).append(group)
    return [(by_id[version_id].spec, groups) for version_id, groups in grouped.items()]


def _with_tasks(rows) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(version id, key, state, current task names in order) per stack, from one row per current task."""
    found: dict[int, tuple[int, str, str, list]] = {}
    for pk, version_id, key, state, position, task in rows:  # a stack without current tasks: one row, task None
        stack = found.get(pk)
        if stack is None:
            stack = found[pk] = (version_id, key, state, [])
        if task is not None:
            stack[3].append((position, task))
    return [
        (version_id, key, state, tuple(name for _, name in sorted(tasks)))
        for version_id, key, state, tasks in found.values()
    ]


def draft_impact(machine: Machine, draft: spec.Machine) -> impact.Impact:
    """What saving `draft` as the newest version would do to every active stack of `machine`."""
    return impact.assess_groups(draft, pinned_stacks(machine))


def pending_impact(machine: Machine) -> impact.Impact:
    """What moving the stacks on older versions to the current version would do to them."""
    current = machine.current_version
    if current is None:
        return impact.Impact(())
    return impact.assess_groups(current.spec, pinned_stacks(machine, exclude_version=current))
