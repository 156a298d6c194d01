"""Machine format v1: YAML text -> a validated, immutable machine (DESIGN §4, docs/machine-format.md).

Pure Python on purpose (no Django): the validator runs in the API, the admin, the CLI and the
editor preview, and its tests need no database.

- `reader`: safe, bounded, line-tracking YAML.
- `fields`: reading one mapping field by field, with a sentence for each wrong value.
- `rules`: the walk over the document, one small function per rule.
- `executor_configs`: each executor's `config`.
- `notify`: the optional `notify:` rules (targets by name; no secrets in machine files).
- `warnings`: valid, but probably not what was meant.
- `model`: the frozen result.
"""

from machines_app.spec.model import (
    ACTION_KINDS,
    EXECUTORS,
    SYSTEM_EVENTS,
    Action,
    Machine,
    NotifyRule,
    Problem,
    SpecError,
    State,
    TaskDef,
    Validation,
)
from machines_app.spec.rules import check_machine_name, load, validate

__all__ = [
    "ACTION_KINDS",
    "EXECUTORS",
    "SYSTEM_EVENTS",
    "Action",
    "Machine",
    "NotifyRule",
    "Problem",
    "SpecError",
    "State",
    "TaskDef",
    "Validation",
    "check_machine_name",
    "load",
    "validate",
]
