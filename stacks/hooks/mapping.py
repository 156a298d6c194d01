"""A host's delivery → one stack event message, or a reason to ignore it. Pure Python (no Django).

| host | delivery | stack event |
|---|---|---|
| GitHub `pull_request` | `opened`, `reopened` | `on_open` (default LAUNCH) of `pr-{number}` on the hook's machine |
| | `synchronize` (new commits) | `on_update` (default UPDATE_METADATA) |
| | `closed` (merged or not) | `on_close` (default DESTROY) |
| GitLab `Merge Request Hook` | `open`, `reopen` | `on_open` |
| | `update` with new commits (`oldrev`) | `on_update` |
| | `close`, `merge` | `on_close` |
| generic | `{"stackId", "event", "metadata"}` | that event, on the hook's machine |

Metadata sent with GitHub and GitLab events: `branch`, `sha`, `repository`, `number`. Anything else
(other actions, other event kinds, an event left empty in the hook) is ignored with a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPEN, UPDATE, CLOSE = "open", "update", "close"
GITHUB_ACTIONS = {"opened": OPEN, "reopened": OPEN, "synchronize": UPDATE, "closed": CLOSE}
GITLAB_ACTIONS = {"open": OPEN, "reopen": OPEN, "update": UPDATE, "close": CLOSE, "merge": CLOSE}


class BadPayload(Exception):
    """The body is not the shape its host sends; `message` says which field."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class HookConfig:
    name: str
    source: str
    machine: str | None
    stack_id_template: str
    events: Mapping[str, str]  # OPEN/UPDATE/CLOSE → event name ("" to ignore)


@dataclass(frozen=True)
class Mapped:
    kind: str  # what arrived, e.g. "pull_request.opened"
    message: dict | None  # the event message; None when ignored
    reason: str = ""  # why it is ignored


def map_delivery(hook: HookConfig, event_header: str, payload: Any) -> Mapped:
    if not isinstance(payload, Mapping):
        raise BadPayload("the body must be a JSON object")
    if hook.source == "github":
        return _github(hook, event_header, payload)
    if hook.source == "gitlab":
        return _gitlab(hook, event_header, payload)
    return _generic(hook, payload)


def _field(payload: Mapping, path: str, kind: type | tuple) -> Any:
    value: Any = payload
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadPayload(f"the body has no {path} of the expected kind")
    return value


def _github(hook: HookConfig, event: str, payload: Mapping) -> Mapped:
    if event == "ping":
        return Mapped("ping", None, "ping received: the hook is set up; pull_request events will be mapped")
    action = payload.get("action")
    kind = f"{event}.{action}" if action else event
    if event != "pull_request":
        return Mapped(kind, None, f"{event} events are not mapped; this hook maps pull_request events")
    return _pull_request(hook, kind, GITHUB_ACTIONS.get(action), {
        "number": _field(payload, "number", int),
        "branch": _field(payload, "pull_request.head.ref", str),
        "sha": _field(payload, "pull_request.head.sha", str),
        "repository": _field(payload, "repository.full_name", str),
    })


def _gitlab(hook: HookConfig, event: str, payload: Mapping) -> Mapped:
    kind_name = payload.get("object_kind")
    attrs = payload.get("object_attributes") if isinstance(payload.get("object_attributes"), Mapping) else {}
    action = attrs.get("action")
    kind = f"{kind_name}.{action}" if action else str(kind_name or event)
    if kind_name != "merge_request":
        return Mapped(kind, None, f"{event or kind_name} events are not mapped; this hook maps Merge Request Hook "
                                  "events")
    which = GITLAB_ACTIONS.get(action)
    if which == UPDATE and "oldrev" not in attrs:
        return Mapped(kind, None, "a merge request update without new commits (no oldrev) is not mapped")
    return _pull_request(hook, kind, which, {
        "number": _field(payload, "object_attributes.iid", int),
        "branch": _field(payload, "object_attributes.source_branch", str),
        "sha": _field(payload, "object_attributes.last_commit.id", str),
        "repository": _field(payload, "project.path_with_namespace", str),
    })


def _pull_request(hook: HookConfig, kind: str, which: str | None, facts: dict) -> Mapped:
    event = hook.events.get(which, "") if which else ""
    if not event:
        mapped = ", ".join(f"{k}→{v}" for k, v in hook.events.items() if v) or "none"
        return Mapped(kind, None, f"{kind} is not mapped to a stack event by hook {hook.name} (mapped: {mapped})")
    message = {"stackId": stack_id(hook.stack_id_template, facts), "event": event, "metadata": facts}
    if hook.machine:
        message["machine"] = hook.machine
    return Mapped(kind, message)


def stack_id(template: str, facts: Mapping) -> str:
    """`pr-{number}` → `pr-42`; `{branch}` is made URL-safe (`feature/x` → `feature-x`)."""
    branch = re.sub(r"[^A-Za-z0-9._-]+", "-", str(facts.get("branch", ""))).strip("-._")
    return template.replace("{number}", str(facts.get("number", ""))).replace("{branch}", branch)[:63]


def _generic(hook: HookConfig, payload: Mapping) -> Mapped:
    unknown = sorted(set(payload) - {"stackId", "event", "metadata", "id"})
    if unknown:
        raise BadPayload(f"unknown keys {', '.join(unknown)}; a generic hook takes stackId, event, metadata and id")
    message = {"stackId": payload.get("stackId"), "event": payload.get("event")}
    if "metadata" in payload:
        message["metadata"] = payload["metadata"]
    if hook.machine:
        message["machine"] = hook.machine
    return Mapped(f"generic.{payload.get('event')}", message)
