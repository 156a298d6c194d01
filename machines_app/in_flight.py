"""The stacks in flight on a machine, read for `machines_app.impact`.

Read through the reverse relations `Machine.stacks` and `Stack.tasks` so that machines_app never
imports the stacks app (imports run stacks -> machines_app). The editor asks again after every pause
in typing, with up to tens of thousands of stacks, so the database does the grouping: one query
returns one row per (pinned version, state, current tasks) with the ids of the stacks that share it,
and one more reads the versions they are pinned to. Python never sees a row per stack or task.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import Aggregate, CharField, FilteredRelation, Func, Q, QuerySet, Value
from django.db.models.functions import Cast

from machines_app import impact, spec
from machines_app.models import Machine, MachineVersion

# Stack ids (checked by stacks.messages before a stack is created) and task names (checked by the
# validator) are letters, digits, '.', '_' and '-', so these separators cannot occur inside them.
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


def _position_and_name(relation: str) -> Func:
    """'0 db-setup' for a task, NULL where the LEFT JOIN found none (Concat would make that ' ')."""
    position = Cast(f"{relation}__position", CharField())
    return Func(position, Value(" "), f"{relation}__name", template="%(expressions)s", arg_joiner=" || ",
                output_field=CharField())


def _groups(stacks: QuerySet) -> list[tuple[int, str, str | None, str]]:
    """(version id, state, current tasks as '1 db,0 cert' or None, stack ids joined by spaces) per group.

    The ORM writes the query of one row per stack, its current tasks joined in and aggregated;
    the database then groups those rows in a derived table, which the ORM cannot write. (A
    correlated subquery per stack, which it can, is about as fast on SQLite, but PostgreSQL's planner
    then costs the query high enough to JIT-compile it: 20 ms more for 10 000 stacks.)
    """
    per_stack = (
        stacks.annotate(current_task=FilteredRelation("tasks", condition=Q(tasks__current=True)))
        .order_by()
        .values("pk")
        .annotate(task_list=_Joined(_position_and_name("current_task"), TASK_SEPARATOR))
        .values_list("machine_version_id", "state", "task_list", "key")
    )
    connection = connections[per_stack.db]
    quote = connection.ops.quote_name
    joined_keys = "STRING_AGG" if connection.vendor == "postgresql" else "GROUP_CONCAT"
    sql, params = per_stack.query.get_compiler(using=per_stack.db).as_sql()
    columns = ", ".join(quote(name) for name in ("machine_version_id", "state", "task_list"))
    grouped = (f"SELECT {columns}, {joined_keys}({quote('key')}, '{KEY_SEPARATOR}') "
               f"FROM ({sql}) per_stack GROUP BY 1, 2, 3")
    with connection.cursor() as cursor:
        cursor.execute(grouped, params)
        return cursor.fetchall()


def pinned_stacks(machine: Machine, *, exclude_version: MachineVersion | None = None,
                  ) -> list[tuple[spec.Machine, list[impact.StackGroup]]]:
    """Active stacks of `machine` grouped by the parsed version each is pinned to, then by state and tasks."""
    stacks = machine.stacks.filter(removed_at__isnull=True)
    if exclude_version is not None:
        stacks = stacks.exclude(machine_version=exclude_version)
    keys: dict[tuple[int, str, tuple[str, ...]], list[str]] = {}
    for version_id, state, task_list, joined in _groups(stacks):
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
