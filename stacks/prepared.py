"""The event path's SQL, built by the ORM once per connection and then only run with new values.

Why: on a no-op event the database does four statements in about a millisecond, but building
them through querysets (compiling the SELECT with its joins, `Model.save`, `objects.create`) cost
more CPU than everything else `handle_event` does together (benchmarks/bench_events.py, P1/P2;
the figures are in issue #10's closing note). The statements themselves are unchanged: each one is
the ORM's own SQL for the same queryset (so the locking, quoting and backend differences stay
Django's), compiled with placeholder values that are swapped for the real ones on every run, and
its rows go through the same converters the queryset would apply.

The cache lives on the connection wrapper (one per thread), so nothing compiled for one
connection or backend is ever run on another. Only whole-row reads, updates by primary key and
single-row inserts are offered: anything else stays a plain queryset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connections, models
from django.db.models.sql.compiler import SQLCompiler

from machines_app.models import Machine, MachineVersion
from stacks.models import Stack, Task

M = TypeVar("M", bound=models.Model)
DB = "default"

# Placeholder values: unlikely to be real ones, and found again by equality in the compiled params.
KEY = "\x00cloudseam-prepared-key\x00"
PK = -7_770_001

_STACK_FIELDS = [f.attname for f in Stack._meta.concrete_fields]
_TASK_FIELDS = [f.attname for f in Task._meta.concrete_fields]
_VERSION_FIELDS = [f.attname for f in MachineVersion._meta.concrete_fields if f.name != "yaml_text"]


class _Select:
    """One compiled SELECT: its SQL, where the placeholders sit, and the converters of its columns."""

    def __init__(self, queryset: models.QuerySet, placeholders: dict[object, int]):
        compiler: SQLCompiler = queryset.query.get_compiler(queryset.db)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = {placeholders[p]: i for i, p in enumerate(self.params) if p in placeholders}
        if len(self.slots) != len(placeholders):
            raise RuntimeError(f"a placeholder did not reach the compiled SQL: {self.sql}")
        self.compiler = compiler
        self.converters = compiler.get_converters([column for column, _, _ in compiler.select])

    def rows(self, *values) -> list:
        params = list(self.params)
        for which, index in self.slots.items():
            params[index] = values[which]
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        return list(self.compiler.apply_converters(rows, self.converters)) if self.converters else rows


def _cached(name: str, build: Callable[[], object]):
    connection = connections[DB]
    cache = connection.__dict__.setdefault("_cloudseam_prepared", {})
    found = cache.get(name)
    if found is None:
        found = cache[name] = build()
    return found


def lock_active_stack(key: str) -> Stack | None:
    """The active stack with this key, its row locked (only its row), with machine and version attached.

    Same as `select_for_update(of=("self",)).select_related("machine", "machine_version")`
    without the version's YAML text (`MachineVersion.spec` is cached by content hash) and with
    the machine's name only (anything else of the machine loads when asked for).
    """
    select = _cached("stack", lambda: _Select(
        Stack.objects.select_for_update(of=("self",))
        .filter(key=KEY, removed_at__isnull=True)
        .values_list(*_STACK_FIELDS, "machine__name", *(f"machine_version__{f}" for f in _VERSION_FIELDS))[:1],
        {KEY: 0},
    ))
    rows = select.rows(key)
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
    """The stack's current task rows in order, locked (a claiming worker waits for this event)."""
    select = _cached("tasks", lambda: _Select(
        Task.objects.select_for_update().filter(stack_id=PK, current=True).order_by("position")
        .values_list(*_TASK_FIELDS),
        {PK: 0},
    ))
    return [Task.from_db(DB, _TASK_FIELDS, row) for row in select.rows(stack_pk)]


def update(obj: models.Model, fields: Sequence[str]) -> None:
    """`obj.save(update_fields=fields)` without building the UPDATE again (auto_now fields are set too)."""
    model = type(obj)
    columns = [model._meta.get_field(name) for name in fields]
    connection = connections[DB]

    def build() -> str:
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
        return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"

    sql = _cached(f"update:{model._meta.label}:{','.join(fields)}", build)
    params = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, obj.pk])


def insert(obj: M) -> M:
    """`obj.save(force_insert=True)` for one row, with the INSERT built once; sets the new primary key."""
    model = type(obj)
    connection = connections[DB]
    if not connection.features.can_return_columns_from_insert:
        obj.save(force_insert=True)
        return obj
    pk = model._meta.pk
    columns = [f for f in model._meta.local_concrete_fields if f is not model._meta.auto_field]

    def build() -> str:
        quote = connection.ops.quote_name
        names = ", ".join(quote(f.column) for f in columns)
        returning, _ = connection.ops.return_insert_columns([pk])
        marks = ", ".join(["%s"] * len(columns))
        return f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({marks}) {returning}"

    sql = _cached(f"insert:{model._meta.label}", build)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = DB
    return obj
