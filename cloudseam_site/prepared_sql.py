"""Statements built by the ORM once per process and then only run with new values.

Why: on the hot paths (an event, a bearer token check) the database answers each statement in a
fraction of a millisecond, but building the statement through a queryset (compiling its SELECT
and joins, `Model.save`, `objects.create`) cost more CPU than everything else the request did
(benchmarks/bench_events.py, P1/P2 and P3; the figures are in issue #10's closing note). The SQL
is unchanged: a `Select` is the ORM's own SQL for a queryset (so locking, quoting and backend
differences stay Django's), compiled with placeholder values that are swapped for the real ones
on every run, and its rows go through the converters the queryset would apply.

The cache is the process's, one per backend (`connection.vendor`): the SQL text depends on the
backend and never on the connection. It used to live on the connection wrapper, but under Daphne every
request runs in a thread of its own with a new wrapper, so every request compiled everything again
(13 % of a POST /api/events, issue #10). Only reads through `values_list`, updates by
primary key and single-row inserts are offered: anything else stays a plain queryset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connections, models

M = TypeVar("M", bound=models.Model)
DB = "default"

# Placeholder values for `select`: unlikely to be real ones, found again by equality in the params.
TEXT = ("\x00prepared-0\x00", "\x00prepared-1\x00")
NUMBER = (-7_770_001, -7_770_002)


class Select:
    """One compiled `values_list` queryset: its SQL, where the placeholders sit, its converters."""

    def __init__(self, queryset: models.QuerySet, placeholders: Sequence[object]):
        compiler = queryset.query.get_compiler(queryset.db)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = [self.params.index(p) if p in self.params else -1 for p in placeholders]
        if -1 in self.slots:
            raise RuntimeError(f"a placeholder did not reach the compiled SQL: {self.sql}")
        self.converters = list(compiler.get_converters([column for column, _, _ in compiler.select]).items())

    def rows(self, *values) -> list:
        params = list(self.params)
        for index, value in zip(self.slots, values, strict=True):
            params[index] = value
        connection = connections[DB]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        if not self.converters:
            return rows
        converted = []
        for row in map(list, rows):
            for position, (functions, expression) in self.converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
            converted.append(row)
        return converted


_cache: dict[tuple[str, str], object] = {}


def cached(name: str, build: Callable[[], object]):
    """What `build` makes, once per process and backend: statements, never data."""
    key = (connections[DB].vendor, name)
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = build()
    return found


def select(name: str, build: Callable[[], models.QuerySet], placeholders: Sequence[object], *values) -> list:
    """Rows of the queryset `build()` makes with `placeholders`, run with `values` in their place."""
    return cached(name, lambda: Select(build(), placeholders)).rows(*values)


def update(obj: models.Model, fields: Sequence[str], **where) -> int:
    """`obj.save(update_fields=fields)` without building the UPDATE again (auto_now fields are set too).

    `where` adds equality conditions on other fields (`outcome="running"`: only while it is still
    running); returns the number of rows changed, as `QuerySet.update` does.
    """
    model = type(obj)
    columns = [model._meta.get_field(name) for name in fields]
    conditions = [model._meta.get_field(name) for name in where]
    connection = connections[DB]

    def build() -> str:
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
        extra = "".join(f" AND {quote(f.column)} = %s" for f in conditions)
        return (f"UPDATE {quote(model._meta.db_table)} SET {assignments} "
                f"WHERE {quote(model._meta.pk.column)} = %s{extra}")

    sql = cached(f"update:{model._meta.label}:{','.join(fields)}:{','.join(where)}", build)
    params = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in columns]
    checks = [f.get_db_prep_value(value, connection) for f, value in zip(conditions, where.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, obj.pk, *checks])
        return cursor.rowcount


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

    sql = cached(f"insert:{model._meta.label}", build)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = DB
    return obj
