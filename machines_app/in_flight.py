"""The stacks in flight on a machine, read for `machines_app.impact`.

Read through the reverse relations `Machine.stacks` and `Stack.tasks` so that machines_app never
imports the stacks app (imports run stacks -> machines_app). The editor asks again after every pause
in typing, with up to tens of thousands of stacks, so the database does the grouping: one query
returns one row per (pinned version, state, current tasks) with how many stacks share it and their
ids, and one more reads the versions they are pinned to. Python never sees a row per stack or task.
"""

from __future__ import annotations

from django.db.models import Aggregate, CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat

from machines_app import impact, spec
from machines_app.models import Machine, MachineVersion

# Stack ids and task names are letters, digits, '.', '_' and '-' (stacks.messages, the validator),
# so these separators cannot occur inside them.
KEY_SEPARATOR = " "
TASK_SEPARATOR = ","


class _Joined(Aggregate):
    """The values of a group joined by `separator`, in no particular order (GROUP_CONCAT, STRING_AGG)."""

    function = "GROUP_CONCAT"
    output_field = CharField()

    def __init__(self, expression, separator: str, **extra):
        super().__init__(expression, Value(separator), **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="STRING_AGG", **extra)


def pinned_stacks(machine: Machine, *, exclude_version: MachineVersion | None = None,
                  ) -> list[tuple[spec.Machine, list[impact.StackGroup]]]:
    """Active stacks of `machine` grouped by the parsed version each is pinned to, then by state and tasks."""
    stacks = machine.stacks.filter(removed_at__isnull=True)
    if exclude_version is not None:
        stacks = stacks.exclude(machine_version=exclude_version)
    task_model = stacks.model._meta.get_field("tasks").related_model
    current_tasks = (
        task_model.objects.filter(stack=OuterRef("pk"), current=True)
        .order_by().values("stack")  # one row: this stack's current tasks as "position name,…"
        .annotate(names=_Joined(Concat(Cast("position", CharField()), Value(" "), "name"), TASK_SEPARATOR))
        .values("names")
    )
    rows = (
        stacks.annotate(task_list=Subquery(current_tasks))
        .order_by()
        .values_list("machine_version_id", "state", "task_list")
        .annotate(keys=_Joined("key", KEY_SEPARATOR))
    )
    keys: dict[tuple[int, str, tuple[str, ...]], list[str]] = {}
    for version_id, state, task_list, joined in rows:
        keys.setdefault((version_id, state, task_names(task_list)), []).extend(joined.split(KEY_SEPARATOR))
    versions = MachineVersion.objects.filter(pk__in={group[0] for group in keys}).only("number", "yaml_text",
                                                                                     "content_hash")
    by_id = {version.pk: version for version in versions}
    grouped: dict[int, list[impact.StackGroup]] = {}
    for (version_id, state, tasks), group_keys in keys.items():
        group = impact.StackGroup(state, tasks, by_id[version_id].number, group_keys)
        grouped.setdefault(version_id, []).append(group)
    return [(by_id[version_id].spec, groups) for version_id, groups in grouped.items()]


def task_names(task_list: str | None) -> tuple[str, ...]:
    """'1 db-setup,0 cert-provision' (in any order) -> ('cert-provision', 'db-setup'); None -> ()."""
    if not task_list:
        return ()
    tasks = (item.split(" ", 1) for item in task_list.split(TASK_SEPARATOR))
    return tuple(name for _, name in sorted((int(position), name) for position, name in tasks))


def draft_impact(machine: Machine, draft: spec.Machine) -> impact.Impact:
    """What saving `draft` as the newest version would do to every active stack of `machine`."""
    return impact.assess_groups(draft, pinned_stacks(machine))


def pending_impact(machine: Machine) -> impact.Impact:
    """What moving the stacks on older versions to the current version would do to them."""
    current = machine.current_version
    if current is None:
        return impact.Impact(())
    return impact.assess_groups(current.spec, pinned_stacks(machine, exclude_version=current))
