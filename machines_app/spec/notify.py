"""The optional top-level `notify:` list: which targets hear of what happens to a machine's stacks.

    notify:
      - {on: task_failed, target: ops-hook}
      - {on: entered, state: RUN, target: team-chat}
      - {on: removed, target: ops-hook}

A target is only named here: its URL and secret are configured in the admin (Notification targets),
so no secret ever sits in a machine file. One small check per rule, as everywhere in the validator.
"""

from __future__ import annotations

import re
from typing import Any

from machines_app.spec.fields import Fields, describe, unknown_name
from machines_app.spec.model import ENTERED, NOTIFY_KEYS, NOTIFY_TRIGGERS, TASK_NAME_PATTERN, NotifyRule
from machines_app.spec.reader import item_path, line_of, quote

EXAMPLE = "e.g. {on: task_failed, target: ops-hook}"


def read_notify(raw: Any, states: tuple[str, ...], fields: Fields) -> tuple[NotifyRule, ...]:
    """The rules of a `notify:` list; an absent list means no notifications."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        fields.error("notify", f"'notify' must be a list of rules, {EXAMPLE}; found {describe(raw)}")
        return ()
    path = fields.where("notify")[0]
    rules = []
    for index, item in enumerate(raw):
        where = Fields(item, item_path(path, index), line_of(raw, index), fields.report, "a notify rule")
        rule = _read_rule(item, where, states)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _read_rule(item: Any, fields: Fields, states: tuple[str, ...]) -> NotifyRule | None:
    if not isinstance(item, dict):
        fields.report.error(fields.base, fields.line, f"a notify rule must be a mapping, {EXAMPLE}; "
                            f"found {describe(item)}")
        return None
    fields.unknown(NOTIFY_KEYS)
    on = fields.choice("on", NOTIFY_TRIGGERS, required=True)
    target = _target(fields)
    state = _state(fields, on, states)
    if on is None or target is None or (on == ENTERED and state is None):
        return None
    return NotifyRule(on, target, state)


def _target(fields: Fields) -> str | None:
    target = fields.text("target", required=True)
    if target is not None and not re.fullmatch(TASK_NAME_PATTERN, target):
        fields.error("target", f"target name {quote(target)} is not allowed; use 1-63 letters, digits, '.', '_' "
                     "or '-' (the name of a notification target configured in the admin)")
        return None
    return target


def _state(fields: Fields, on: str | None, states: tuple[str, ...]) -> str | None:
    if on != ENTERED:
        if fields.mapping.get("state") is not None:
            fields.error("state", f"'state' only goes with on: entered, not with on: {on}")
        return None
    if fields.mapping.get("state") is None:
        fields.error("state", "missing 'state' in a notify rule with on: entered; name the state, e.g. state: RUN")
        return None
    state = fields.text("state")
    if state is not None and state not in states:
        fields.error("state", unknown_name("state", state, states))
        return None
    return state
