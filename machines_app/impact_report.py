"""`validate_machines --impact`: what each machine file would do to the running database's stacks.

For CI pipelines that review machine changes: a file that would strand active stacks of the
machine of the same name fails the check, with one line per stranded stack saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.core.management.base import CommandError
from django.db import DatabaseError

from machines_app import in_flight, spec
from machines_app.models import Machine


def report(path: Path, draft: spec.Machine, write: Callable[[str], None]) -> int:
    """Write one line per active stack the file would strand, then a summary; return how many."""
    try:
        machine = Machine.objects.select_related("current_version").filter(name=path.stem).first()
        found = in_flight.draft_impact(machine, draft) if machine is not None else None
    except DatabaseError as exc:
        raise CommandError(f"--impact needs the database with the active stacks; it cannot be read: {exc}") from exc
    if found is None:
        write(f"{path}: impact: machine {path.stem} is not in the database yet; no stack runs it")
        return 0
    for verdict in found.stranded:
        stack = verdict.stack
        why = "; ".join(r.message for r in verdict.reasons)
        write(f"{path}: stack {stack.key} ({stack.state}, v{stack.version}) would be stranded: {why}")
    write(f"{path}: impact: {found.summary(f'This file ({path.stem})')}")
    return len(found.stranded)
