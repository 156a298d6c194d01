"""The stacks in flight on a machine, read for `machines_app.impact`.

Read through the reverse relations `Machine.stacks` and `Stack.tasks` so that machines_app never
imports the stacks app (imports run stacks -> machines_app). One query for the stacks and their
current task names (a LEFT JOIN on the current tasks), one for the versions they are pinned to:
the editor asks again after every pause in typing, with up to tens of thousands of stacks.
"""

from __future__ import annotations

from itertools import groupby

from django.db.models import FilteredRelation, Q

from machines_app import impact, spec
from machines_app.models import Machine, MachineVersion


def pinned_stacks(machine: Machine, *, exclude_version: MachineVersion | None = None,
                  ) -> list[tuple[spec.Machine, list[impact.StackRef]]]:
    """Active stacks of `machine` grouped by the parsed version each is pinned to."""
    stacks = machine.stacks.filter(removed_at__isnull=True)
    if exclude_version is not None:
        stacks = stacks.exclude(machine_version=exclude_version)
    rows = (
        stacks.annotate(current_task=FilteredRelation("tasks", condition=Q(tasks__current=True)))
        .order_by("machine_version_id", "key", "pk", "current_task__position")
        .values_list("machine_version_id", "pk", "key", "state", "current_task__name")
    )
    by_version: dict[int, list[tuple[str, str, tuple[str, ...]]]] = {}
    for (version_id, _pk, key, state), tasks in groupby(rows, key=lambda row: row[:4]):
        names = tuple(row[4] for row in tasks if row[4] is not None)
        by_version.setdefault(version_id, []).append((key, state, names))
    versions = MachineVersion.objects.filter(pk__in=list(by_version)).only("number", "yaml_text", "content_hash")
    result = []
    for version in versions:
        refs = [impact.StackRef(key, state, names, version.number) for key, state, names in by_version[version.pk]]
        result.append((version.spec, refs))
    return result


def draft_impact(machine: Machine, draft: spec.Machine) -> impact.Impact:
    """What saving `draft` as the newest version would do to every active stack of `machine`."""
    return impact.assess(draft, pinned_stacks(machine))


def pending_impact(machine: Machine) -> impact.Impact:
    """What moving the stacks on older versions to the current version would do to them."""
    current = machine.current_version
    if current is None:
        return impact.Impact(())
    return impact.assess(current.spec, pinned_stacks(machine, exclude_version=current))
